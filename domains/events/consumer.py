"""The framework of the services that react to domain events (analytics, notifications, CRM).

A consumer is a name, the topics it reads and a handler per event type. It reads in the
consumer group `kabinet.<name>`, so the instances of one service share the partitions and
each event reaches the service once, while other services read the same topics on their
own. Delivery is at least once (the relay may publish an event twice, and offsets are
committed after handling), so each handler runs in one transaction with the insert of
`(consumer, event id)` into `processed_events`: a duplicate finds the row and changes
nothing, and a failed handler leaves no row and no effect.

A handler that raises is tried again with exponential backoff; after `max_attempts` the
message goes, unchanged, to `<topic><dead_letter_suffix>` with headers saying why, and the
consumer moves on. A message that is not a CloudEvent goes there at once. Offsets are
committed only for messages handled, skipped or dead-lettered.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta

from sqlalchemy import bindparam
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from domains.clock import utcnow
from domains.database import Database
from domains.events.bus import BusConsumer, Delivery, EventBus
from domains.events.cloudevent import CloudEvent, InvalidEvent
from domains.events.metrics import ConsumerMetrics, Outcome
from domains.events.models import ProcessedEvent
from domains.writes import Write, writer

log = logging.getLogger(__name__)

Handler = Callable[[AsyncSession, CloudEvent], Awaitable[None]]

processed_events = ProcessedEvent.__table__

# Once per consumer and event id: a duplicate inserts nothing.
_CLAIM = Write(
    postgresql.insert(processed_events)
    .values({name: bindparam(name) for name in ("consumer", "event_id", "processed_at")})
    .on_conflict_do_nothing(
        index_elements=[processed_events.c.consumer, processed_events.c.event_id]
    )
)

# How long one fetch waits for messages, so a stop request is seen this soon when idle.
FETCH_WAIT_SECONDS = 0.5

# Dead-letter headers: why the message is there, and where it came from.
ERROR_CLASS = "kabinet.error.class"
ERROR_MESSAGE = "kabinet.error.message"
ATTEMPTS = "kabinet.attempts"
ORIGINAL_TOPIC = "kabinet.original.topic"
ORIGINAL_PARTITION = "kabinet.original.partition"
ORIGINAL_OFFSET = "kabinet.original.offset"
CONSUMER = "kabinet.consumer"

# Kafka headers are small; an exception message may not be.
_MAX_ERROR_MESSAGE = 1000


def group_of(name: str) -> str:
    """The consumer group a service `name` reads in."""
    return f"kabinet.{name}"


class EventConsumer:
    """One service's reader of domain events; `run` until the stop event is set."""

    def __init__(
        self,
        name: str,
        db: Database,
        bus: EventBus,
        topics: Sequence[str],
        handlers: Mapping[str, Handler],
        *,
        dead_letter_suffix: str,
        max_attempts: int,
        backoff: timedelta,
        metrics: ConsumerMetrics | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts is at least 1")
        self.name = name
        self.group = group_of(name)
        self._db = db
        self._bus = bus
        self._topics = list(topics)
        self._handlers = dict(handlers)
        self._dead_letter_suffix = dead_letter_suffix
        self._max_attempts = max_attempts
        self._backoff = backoff.total_seconds()
        self._metrics = metrics
        self._reader: BusConsumer | None = None
        self._reported: set[tuple[str, int]] = set()

    def lag(self) -> dict[tuple[str, int], int]:
        """Messages behind the end of each partition this instance reads; {} when stopped."""
        return {} if self._reader is None else self._reader.lag()

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch, handle, commit until `stop`; then finish the message in hand, commit, leave.

        Messages fetched but not yet handled when `stop` comes stay uncommitted, so the
        group hands them to the next member (or to this service's next start).
        """
        reader = self._bus.consumer(self._topics, group=self.group)
        await reader.start()
        self._reader = reader
        try:
            while not stop.is_set():
                done: dict[tuple[str, int], int] = {}
                for delivery in await reader.fetch(FETCH_WAIT_SECONDS):
                    if not await self._process(delivery, stop):
                        break
                    done[(delivery.topic, delivery.partition)] = delivery.offset + 1
                    if stop.is_set():
                        break
                if done:
                    await reader.commit(done)
                self._report_lag()
        finally:
            self._reader = None
            self._clear_lag()
            await reader.stop()

    async def _process(self, delivery: Delivery, stop: asyncio.Event) -> bool:
        """Handles one message to an outcome; False when `stop` cut its retries short."""
        try:
            event = delivery.event()
        except InvalidEvent as error:
            await self._dead_letter(delivery, error, attempts=0)
            self._count(Outcome.DEAD_LETTERED)
            return True
        handler = self._handlers.get(event.type)
        if handler is None:
            self._count(Outcome.IGNORED)
            return True
        attempt = 1
        while True:
            try:
                fresh = await self._handle(handler, event)
            except Exception as error:
                if attempt >= self._max_attempts:
                    log.exception(
                        "consumer %s: event %s failed %d times; dead-lettered",
                        self.name,
                        event.id,
                        attempt,
                    )
                    await self._dead_letter(delivery, error, attempts=attempt)
                    self._count(Outcome.DEAD_LETTERED)
                    return True
                log.warning(
                    "consumer %s: event %s failed (attempt %d): %r",
                    self.name,
                    event.id,
                    attempt,
                    error,
                )
                if self._metrics is not None:
                    self._metrics.retried(self.name)
                if await _stopped_within(stop, self._backoff * 2 ** (attempt - 1)):
                    return False
                attempt += 1
            else:
                self._count(Outcome.HANDLED if fresh else Outcome.DUPLICATE)
                return True

    async def _handle(self, handler: Handler, event: CloudEvent) -> bool:
        """Runs the handler once per event id; False when this consumer already had it."""
        async with self._db.transaction() as session:
            claimed = await writer(session).execute(
                _CLAIM, consumer=self.name, event_id=event.id, processed_at=utcnow()
            )
            if not claimed:
                return False
            await handler(session, event)
            return True

    async def _dead_letter(self, delivery: Delivery, error: Exception, *, attempts: int) -> None:
        """Publishes the original message to the dead-letter topic; raises if it cannot,
        so the message stays uncommitted and comes back rather than being lost."""
        headers = [
            *delivery.headers,
            (ERROR_CLASS, type(error).__qualname__.encode()),
            (ERROR_MESSAGE, str(error)[:_MAX_ERROR_MESSAGE].encode()),
            (ATTEMPTS, str(attempts).encode()),
            (ORIGINAL_TOPIC, delivery.topic.encode()),
            (ORIGINAL_PARTITION, str(delivery.partition).encode()),
            (ORIGINAL_OFFSET, str(delivery.offset).encode()),
            (CONSUMER, self.name.encode()),
        ]
        key = delivery.key.decode(errors="replace") if delivery.key is not None else ""
        await self._bus.publish(
            delivery.topic + self._dead_letter_suffix, key, delivery.value, headers
        )

    def _count(self, outcome: Outcome) -> None:
        if self._metrics is not None:
            self._metrics.finished(self.name, outcome)

    def _report_lag(self) -> None:
        if self._metrics is None:
            return
        for (topic, partition), behind in self.lag().items():
            self._metrics.lag(self.name, topic, partition, behind)
            self._reported.add((topic, partition))

    def _clear_lag(self) -> None:
        """A stopped instance no longer reads those partitions: another member reports them."""
        if self._metrics is None:
            return
        for topic, partition in self._reported:
            self._metrics.released(self.name, topic, partition)
        self._reported.clear()


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Waits `seconds` unless `stop` comes first; True when it did."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True
