"""One per API process: reads every event topic and hands each event to the local subscribers
of its subject, and to those of an audience that want its type.

A subscriber watches one subject (`customer:7`, `ticket:12`: one object's events) or, for an
audience (operators watching every new ticket), every subject; either way only some event
types. Who may watch what is decided before a subscriber gets here (`resolvers.live`).

Each process reads the topics without a consumer group, so every instance sees every event
and fans it out to the sockets it holds. A subscriber has a bounded queue; one that cannot
keep up is dropped (its stream ends with `SlowConsumer`) instead of making the hub wait,
so one stalled client never delays anyone else's events.
"""

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence

from domains.errors import DomainError
from domains.events.bus import BusConsumer, CloudEvent, EventBus, InvalidEvent

logger = logging.getLogger("kabinet.subscriptions")

# How long one fetch waits for messages; also how soon stop() is noticed.
FETCH_WAIT_SECONDS = 1.0
# Between attempts to reach the bus when it is away.
RETRY_SECONDS = 2.0


class SlowConsumer(DomainError):
    """The subscriber's queue overflowed: it was dropped, and should resume with `after`."""

    code = "SLOW_CONSUMER"

    def __init__(self) -> None:
        super().__init__(
            "events came faster than this client read them; reconnect and pass the last "
            "event id as `after` to get the rest"
        )


class TooManySubscriptions(DomainError):
    """One user holds as many live subscriptions on this process as allowed."""

    code = "TOO_MANY_SUBSCRIPTIONS"

    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} live subscriptions at a time; end one first")


# Where the hub looks a subscriber up: (subject or None for every subject, event type).
Route = tuple[str | None, str]


class Subscriber:
    """One stream's place in the hub: which events it wants and those not yet taken."""

    def __init__(
        self, subject: str | None, types: frozenset[str], owner: int, queue_size: int
    ) -> None:
        self.subject = subject  # None: every subject's events of `types` (an audience)
        self.types = types
        self.owner = owner  # the user who subscribed: limits count per user
        # None marks the end: the subscriber was dropped for being slow.
        self._queue: asyncio.Queue[CloudEvent | None] = asyncio.Queue(queue_size)

    @property
    def routes(self) -> list[Route]:
        return [(self.subject, type) for type in self.types]

    async def next(self) -> CloudEvent:
        event = await self._queue.get()
        if event is None:
            raise SlowConsumer()
        return event

    def offer(self, event: CloudEvent) -> bool:
        """Queues the event without waiting; False when the queue is full."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            return False
        return True

    def end(self) -> None:
        """Discards what is queued and leaves only the end mark, which always fits then."""
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)


class Hub:
    def __init__(
        self,
        bus: EventBus,
        topics: Sequence[str],
        *,
        queue_size: int,
        max_per_owner: int,
        on_slow_consumer: Callable[[], None] = lambda: None,
    ) -> None:
        self.bus = bus
        self.topics = tuple(topics)
        self.queue_size = queue_size
        self.max_per_owner = max_per_owner
        self._owned: Counter[int] = Counter()
        self.on_slow_consumer = on_slow_consumer
        # Keyed by what an event matches, so handing one out touches only its takers.
        self._by_route: dict[Route, set[Subscriber]] = {}
        self._subscribers: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    async def start(self) -> None:
        """Reads from the end of each topic from now on; when the bus is away, from when it
        comes back (a subscriber passing `after` still gets what it missed)."""
        consumer = self.bus.consumer(self.topics, group=None)
        try:
            await consumer.start()
            started = True
        except Exception:
            logger.exception("event bus unreachable; live events start once it is back")
            started = False
        self._task = asyncio.create_task(self._run(consumer, started=started))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def subscribe(self, types: frozenset[str], *, subject: str | None, owner: int) -> Subscriber:
        """Registers a stream of `owner` (a user id), within that user's limit: the events of
        `types` about `subject`, or about every subject when it is None."""
        if self._owned[owner] >= self.max_per_owner:
            raise TooManySubscriptions(self.max_per_owner)
        subscriber = Subscriber(subject, types, owner, self.queue_size)
        self._subscribers.add(subscriber)
        for route in subscriber.routes:
            self._by_route.setdefault(route, set()).add(subscriber)
        self._owned[owner] += 1
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Idempotent: a subscriber dropped for being slow is unsubscribed again as its
        stream ends."""
        if subscriber not in self._subscribers:
            return
        self._subscribers.discard(subscriber)
        for route in subscriber.routes:
            found = self._by_route[route]
            found.discard(subscriber)
            if not found:
                del self._by_route[route]
        self._owned[subscriber.owner] -= 1
        if not self._owned[subscriber.owner]:
            del self._owned[subscriber.owner]

    def dispatch(self, event: CloudEvent) -> None:
        """Hands the event to its subject's subscribers and to the audiences that want its
        type; never waits."""
        takers = [
            *self._by_route.get((event.subject, event.type), ()),
            *self._by_route.get((None, event.type), ()),
        ]
        for subscriber in takers:
            if not subscriber.offer(event):
                self.unsubscribe(subscriber)
                subscriber.end()
                self.on_slow_consumer()

    async def _run(self, consumer: BusConsumer, *, started: bool) -> None:
        try:
            while True:
                try:
                    if not started:
                        await consumer.start()
                        started = True
                    deliveries = await consumer.fetch(FETCH_WAIT_SECONDS)
                except Exception:
                    logger.exception("reading events failed; retrying")
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
                for delivery in deliveries:
                    try:
                        event = delivery.event()
                    except InvalidEvent:
                        logger.warning(
                            "skipped a message that is not a CloudEvent (%s/%d@%d)",
                            delivery.topic,
                            delivery.partition,
                            delivery.offset,
                        )
                        continue
                    self.dispatch(event)
        finally:
            if started:
                with contextlib.suppress(Exception):
                    await consumer.stop()
