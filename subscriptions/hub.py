"""One per API process: reads every event topic and hands each event to the local subscribers
of its customer.

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


class Subscriber:
    """One stream's place in the hub: which events it wants and those not yet taken."""

    def __init__(
        self, customer_id: int, owner: int, types: frozenset[str], queue_size: int
    ) -> None:
        self.customer_id = customer_id
        self.owner = owner  # the user who subscribed: limits count per user
        self.types = types
        # None marks the end: the subscriber was dropped for being slow.
        self._queue: asyncio.Queue[CloudEvent | None] = asyncio.Queue(queue_size)

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
        self._by_customer: dict[int, set[Subscriber]] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def subscriber_count(self) -> int:
        return sum(len(found) for found in self._by_customer.values())

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

    def subscribe(self, customer_id: int, types: frozenset[str], *, owner: int) -> Subscriber:
        """Registers a stream of `owner` (a user id), within that user's limit."""
        if self._owned[owner] >= self.max_per_owner:
            raise TooManySubscriptions(self.max_per_owner)
        subscriber = Subscriber(customer_id, owner, types, self.queue_size)
        self._by_customer.setdefault(customer_id, set()).add(subscriber)
        self._owned[owner] += 1
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        found = self._by_customer.get(subscriber.customer_id)
        if found is None or subscriber not in found:
            return
        found.discard(subscriber)
        if not found:
            del self._by_customer[subscriber.customer_id]
        self._owned[subscriber.owner] -= 1
        if not self._owned[subscriber.owner]:
            del self._owned[subscriber.owner]

    def dispatch(self, event: CloudEvent) -> None:
        """Hands the event to its customer's subscribers that want its type; never waits."""
        customer_id = event.customer_id
        if customer_id is None:
            return
        for subscriber in list(self._by_customer.get(customer_id, ())):
            if event.type in subscriber.types and not subscriber.offer(event):
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
