"""One per API process: reads every event topic and hands each event to the feeds that want
it; a feed renders the event once and gives the same bytes to every one of its subscribers.

A feed is one subscription shape: the same operation, variables and authorization scope,
watching one subject (`customer:7`, `ticket:12`: one object's events) or, for an audience
(operators watching every new ticket), every subject; either way only some event types. Who
may watch what, and what makes two subscribers one shape, is decided before a subscriber
gets here (`resolvers.live`); the hub only keeps subscribers of one key together.

Each process reads the topics without a consumer group, so every instance sees every event
and fans it out to the sockets it holds. Delivery takes no task per message: a subscriber
whose transport is ready is written to at once (`Writer`); otherwise the message waits in
the subscriber's bounded buffer until the transport drains (or its own stream sends it,
for a transport without a writer). A subscriber whose buffer
overflows is dropped (its stream ends with `SlowConsumer`) instead of making the hub wait,
so one stalled client never delays anyone else's events, its feed-mates' included.
"""

import asyncio
import contextlib
import logging
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable, Collection, Hashable, Sequence
from inspect import isawaitable
from typing import Protocol

from domains.errors import DomainError
from domains.events.bus import BusConsumer, CloudEvent, EventBus, InvalidEvent

logger = logging.getLogger("kabinet.subscriptions")

# How long one fetch waits for messages; also how soon stop() is noticed.
FETCH_WAIT_SECONDS = 1.0
# Between attempts to reach the bus when it is away.
RETRY_SECONDS = 2.0
# Event ids a feed remembers, so a relay's redelivery is not sent twice.
SEEN_PER_FEED = 1_000


class SlowConsumer(DomainError):
    """The subscriber's buffer overflowed: it was dropped, and should resume with `after`."""

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


# Where the hub looks a feed up: (subject or None for every subject, event type).
Route = tuple[str | None, str]
# A feed's rendering of one event: the message body its subscribers get, None to send
# nothing for that event; awaitable when it has to load something.
Rendered = bytes | None
Render = Callable[[CloudEvent], Rendered | Awaitable[Rendered]]


class Writer(Protocol):
    """A transport that takes a message body without waiting, when it is ready to."""

    def ready(self) -> bool: ...

    def write(self, body: bytes) -> None: ...

    def when_ready(self, flush: Callable[[], None] | None) -> None:
        """Calls `flush` each time the transport is ready again after it was not (None:
        no longer)."""


class Seen:
    """Ids already sent, the newest `limit` of them."""

    __slots__ = ("_ids", "_limit")

    def __init__(self, limit: int) -> None:
        self._ids: OrderedDict[uuid.UUID, None] = OrderedDict()
        self._limit = limit

    def add(self, event_id: uuid.UUID) -> bool:
        """False when the id was already there."""
        if event_id in self._ids:
            return False
        self._ids[event_id] = None
        if len(self._ids) > self._limit:
            self._ids.popitem(last=False)
        return True


class Subscriber:
    """One stream's place in its feed: the bodies its transport has not taken yet.

    With a writer, bodies are written as they come, and those that had to wait (the
    transport backed up, or a catch-up under way) as soon as it can take them: no task
    waits on such a subscriber. Without one, its stream's `pump` sends them."""

    __slots__ = (
        "_buffer",
        "_ended",
        "_holding",
        "_size",
        "_skip",
        "_waiter",
        "feed",
        "on_end",
        "owner",
        "writer",
    )

    def __init__(self, feed: "Feed", owner: int, size: int, writer: Writer | None) -> None:
        self.feed = feed
        self.owner = owner  # the user who subscribed: limits count per user
        self.writer = writer
        # Told when the subscriber is dropped, for a stream that no task waits on.
        self.on_end: Callable[[], None] | None = None
        self._size = size
        self._buffer: deque[tuple[uuid.UUID, bytes]] = deque()
        # While the stream catches up, live bodies wait behind what it missed.
        self._holding = True
        self._ended = False
        self._skip: Collection[uuid.UUID] = ()
        self._waiter: asyncio.Future[None] | None = None

    def offer(self, event_id: uuid.UUID, body: bytes) -> bool:
        """Writes the body now when nothing is ahead of it, else buffers it; False when the
        buffer is full."""
        if event_id in self._skip:
            return True
        writer = self.writer
        if writer is not None and not self._buffer and not self._holding and writer.ready():
            writer.write(body)
            return True
        if len(self._buffer) >= self._size:
            return False
        self._buffer.append((event_id, body))
        self._wake()
        return True

    def release(self, sent: Collection[uuid.UUID] = ()) -> None:
        """The catch-up is over: the held bodies follow it, less the events it already sent
        (which the relay may still bring live: those are skipped too)."""
        if sent:
            self._skip = frozenset(sent)
            self._buffer = deque(entry for entry in self._buffer if entry[0] not in self._skip)
        self._holding = False
        self.flush()
        self._wake()

    def flush(self) -> None:
        """Writes what waits, for as long as the writer takes it."""
        writer = self.writer
        if writer is None or self._holding:
            return
        while self._buffer and writer.ready():
            writer.write(self._buffer.popleft()[1])

    async def pump(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        """Sends the buffered bodies as the transport takes them (with a writer, that
        writes them itself, only waits); never returns: raises SlowConsumer once the
        subscriber is dropped."""
        while True:
            while (self.writer is not None or not self._buffer) and not self._ended:
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
            if self._ended:
                raise SlowConsumer()
            while self._buffer and not self._ended:
                await send(self._buffer.popleft()[1])

    def end(self) -> None:
        """Discards what is buffered; the stream ends with SlowConsumer."""
        self._buffer.clear()
        self._ended = True
        self._wake()
        if self.on_end is not None:
            self.on_end()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class Feed:
    """The subscribers of one shape, and its events in order: each rendered once."""

    __slots__ = ("_pending", "_rendering", "_seen", "hub", "key", "members", "render", "routes")

    def __init__(self, hub: "Hub", key: Hashable, routes: list[Route], render: Render) -> None:
        self.hub = hub
        self.key = key
        self.routes = routes
        self.render = render
        self.members: dict[Subscriber, None] = {}  # in joining order
        self._seen = Seen(SEEN_PER_FEED)
        # Events waiting behind one whose rendering is still loading, in order.
        self._pending: deque[CloudEvent] = deque()
        self._rendering: asyncio.Task[None] | None = None

    def take(self, event: CloudEvent) -> None:
        if not self._seen.add(event.id):
            return
        if self._rendering is not None:
            self._pending.append(event)
            return
        rendered = self._render(event)
        if isawaitable(rendered):
            self._rendering = asyncio.create_task(self._render_in_order(event, rendered))
        else:
            self._deliver(event.id, rendered)

    def close(self) -> None:
        if self._rendering is not None:
            self._rendering.cancel()
            self._rendering = None
        self._pending.clear()

    def _render(self, event: CloudEvent) -> Rendered | Awaitable[Rendered]:
        try:
            return self.render(event)
        except Exception:
            logger.exception("rendering event %s failed; not sent", event.id)
            return None

    async def _render_in_order(self, event: CloudEvent, first: Awaitable[Rendered]) -> None:
        """Renders an event that loads, then those that came meanwhile, keeping their order."""
        rendered = first
        try:
            while True:
                try:
                    body = await rendered if isawaitable(rendered) else rendered
                except Exception:
                    logger.exception("rendering event %s failed; not sent", event.id)
                    body = None
                self._deliver(event.id, body)
                if not self._pending:
                    return
                event = self._pending.popleft()
                rendered = self._render(event)
        finally:
            self._rendering = None

    def _deliver(self, event_id: uuid.UUID, body: Rendered) -> None:
        if body is None:
            return
        dropped = [member for member in self.members if not member.offer(event_id, body)]
        self.hub.on_render(len(self.members) - len(dropped))
        for member in dropped:
            self.hub.drop(member)


class Hub:
    def __init__(
        self,
        bus: EventBus,
        topics: Sequence[str],
        *,
        queue_size: int,
        max_per_owner: int,
        on_slow_consumer: Callable[[], None] = lambda: None,
        on_render: Callable[[int], None] = lambda _delivered: None,
    ) -> None:
        self.bus = bus
        self.topics = tuple(topics)
        self.queue_size = queue_size
        self.max_per_owner = max_per_owner
        self._owned: Counter[int] = Counter()
        self.on_slow_consumer = on_slow_consumer
        # Told once per rendered event, with the number of subscribers it was given to.
        self.on_render = on_render
        self._feeds: dict[Hashable, Feed] = {}
        # Keyed by what an event matches, so handing one out touches only its takers.
        self._by_route: dict[Route, dict[Feed, None]] = {}
        self._subscriber_count = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def subscriber_count(self) -> int:
        return self._subscriber_count

    @property
    def feed_count(self) -> int:
        return len(self._feeds)

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
        for feed in self._feeds.values():
            feed.close()

    def join(
        self,
        key: Hashable,
        types: frozenset[str],
        *,
        subject: str | None,
        owner: int,
        render: Callable[[], Render],
        writer: Writer | None = None,
    ) -> Subscriber:
        """Registers a stream of `owner` (a user id), within that user's limit, in the feed
        of `key`: the events of `types` about `subject`, or about every subject when it is
        None, rendered by the feed's `render` (made by the first subscriber of the key)."""
        if self._owned[owner] >= self.max_per_owner:
            raise TooManySubscriptions(self.max_per_owner)
        feed = self._feeds.get(key)
        if feed is None:
            routes = [(subject, type) for type in sorted(types)]
            feed = self._feeds[key] = Feed(self, key, routes, render())
            for route in routes:
                self._by_route.setdefault(route, {})[feed] = None
        subscriber = Subscriber(feed, owner, self.queue_size, writer)
        if writer is not None:
            writer.when_ready(subscriber.flush)
        feed.members[subscriber] = None
        self._owned[owner] += 1
        self._subscriber_count += 1
        return subscriber

    def leave(self, subscriber: Subscriber) -> None:
        """Idempotent: a subscriber dropped for being slow leaves again as its stream ends."""
        feed = subscriber.feed
        if subscriber not in feed.members:
            return
        del feed.members[subscriber]
        if subscriber.writer is not None:
            subscriber.writer.when_ready(None)
        self._subscriber_count -= 1
        self._owned[subscriber.owner] -= 1
        if not self._owned[subscriber.owner]:
            del self._owned[subscriber.owner]
        if feed.members:
            return
        del self._feeds[feed.key]
        for route in feed.routes:
            found = self._by_route[route]
            del found[feed]
            if not found:
                del self._by_route[route]
        feed.close()

    def drop(self, subscriber: Subscriber) -> None:
        """A subscriber that cannot keep up: out of its feed, its stream ended."""
        self.leave(subscriber)
        subscriber.end()
        self.on_slow_consumer()

    def dispatch(self, event: CloudEvent) -> None:
        """Hands the event to its subject's feeds and to the audiences that want its type;
        never waits."""
        takers = [
            *self._by_route.get((event.subject, event.type), ()),
            *self._by_route.get((None, event.type), ()),
        ]
        for feed in takers:
            feed.take(event)

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
