"""The consumer framework on every bus: MemoryBus on SQLite, Kafka (Tansu) and RabbitMQ on
PostgreSQL."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry
from sqlalchemy import Column, Integer, MetaData, String, Table, Uuid, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.prometheus_consumer_metrics import PrometheusConsumerMetrics
from adapters.rabbitmq_bus import RabbitMQBus
from domains.database import Database
from domains.events.bus import BusConsumer, Delivery, EventBus
from domains.events.cloudevent import CloudEvent
from domains.events.consumer import EventConsumer, Handler, group_of
from domains.events.memory_bus import MemoryBus
from tests.conftest import migrated_database

DEADLINE = 30.0
PARTITIONS = 2

# A handler's visible effect: one row per time it ran (and committed) for an event.
effects_metadata = MetaData()
effects = Table(
    "consumer_test_effects",
    effects_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("consumer", String(100), nullable=False),
    Column("event_id", Uuid, nullable=False),
)


@dataclass
class Backend:
    bus: EventBus
    db: Database

    async def topic(self) -> str:
        """A fresh topic and its dead-letter topic, so tests sharing a broker stay apart."""
        name = f"test.consumer.{uuid.uuid4().hex[:10]}"
        await self.bus.ensure_topics([name, name + ".dlq"])
        return name

    async def fresh(self) -> tuple[str, str]:
        """A fresh topic and consumer name, the consumer's group declared before the test
        publishes (RabbitMQ keeps a group's messages from then on)."""
        topic, name = await self.topic(), new_name()
        await self.bus.ensure_group(group_of(name), [topic])
        return topic, name


@pytest_asyncio.fixture(scope="module")
async def pg_effects_url() -> AsyncIterator[str]:
    async with migrated_database("kabinet_consumer") as url:
        yield url


@pytest_asyncio.fixture(params=["memory", "kafka", "rabbitmq"])
async def backend(
    request: pytest.FixtureRequest, sqlite_url: str, pg_effects_url: str
) -> AsyncIterator[Backend]:
    bus: EventBus
    if request.param == "memory":
        bus, db = MemoryBus(partitions=PARTITIONS), Database(sqlite_url)
    elif request.param == "rabbitmq":
        bus = RabbitMQBus(
            request.getfixturevalue("rabbitmq_url"),
            partitions=PARTITIONS,
            dead_letter_suffix=".dlq",
        )
        db = Database(pg_effects_url)
    else:
        kafka_bootstrap = request.getfixturevalue("kafka_bootstrap")
        from adapters.kafka_bus import KafkaBus

        bus = KafkaBus(
            kafka_bootstrap, client_id="kabinet-test", idempotent=False, partitions=PARTITIONS
        )
        db = Database(pg_effects_url)
    async with db.engine.begin() as conn:
        await conn.run_sync(effects_metadata.create_all)
    await bus.start()
    try:
        yield Backend(bus, db)
    finally:
        await bus.stop()
        await db.dispose()


def cloud_event(type: str = "test.happened", subject: str = "customer:1") -> CloudEvent:
    return CloudEvent(
        id=uuid.uuid4(),
        type=type,
        source="urn:kabinet:test",
        subject=subject,
        time=datetime.now(UTC),
        data={"version": 1},
    )


async def publish(bus: EventBus, topic: str, *events: CloudEvent) -> None:
    for event in events:
        await bus.publish(topic, event.subject, event.to_json())


def recorder(name: str) -> Handler:
    async def record(session: AsyncSession, event: CloudEvent) -> None:
        await session.execute(insert(effects).values(consumer=name, event_id=event.id))

    return record


async def effect_counts(db: Database, name: str) -> dict[uuid.UUID, int]:
    async with db.connect() as conn:
        rows = await conn.execute(
            select(effects.c.event_id, func.count())
            .where(effects.c.consumer == name)
            .group_by(effects.c.event_id)
        )
        return {event_id: count for event_id, count in rows}


class Run:
    """A consumer running in a task; leaving the block stops it and waits for it."""

    def __init__(self, consumer: EventConsumer) -> None:
        self.consumer = consumer
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(consumer.run(self.stop))

    async def until(self, condition: Callable[[], Awaitable[bool]]) -> None:
        """Waits for the condition, failing at the deadline or when the consumer died."""
        async with asyncio.timeout(DEADLINE):
            while not await condition():
                if self.task.done():
                    self.task.result()
                    raise AssertionError("the consumer stopped before the condition held")
                await asyncio.sleep(0.02)

    async def finish(self) -> None:
        self.stop.set()
        async with asyncio.timeout(DEADLINE):
            await self.task


@asynccontextmanager
async def running(consumer: EventConsumer) -> AsyncIterator[Run]:
    run = Run(consumer)
    try:
        yield run
    finally:
        await run.finish()


class Counted:
    """The consumer metrics of one test, read back from their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.metrics = PrometheusConsumerMetrics(self.registry)

    def events(self, name: str, outcome: str) -> float:
        labels = {"consumer": name, "outcome": outcome}
        return self.registry.get_sample_value("kabinet_consumer_events_total", labels) or 0.0

    def retries(self, name: str) -> float:
        labels = {"consumer": name}
        return self.registry.get_sample_value("kabinet_consumer_retries_total", labels) or 0.0

    def lag(self, name: str, topic: str) -> dict[int, float]:
        found: dict[int, float] = {}
        wanted = {"consumer": name, "topic": topic}
        for family in self.registry.collect():
            for sample in family.samples:
                labels = sample.labels
                if sample.name == "kabinet_consumer_lag" and wanted.items() <= labels.items():
                    found[int(labels["partition"])] = sample.value
        return found


def make_consumer(
    backend: Backend,
    topic: str,
    handlers: dict[str, Handler],
    counted: Counted,
    name: str,
    max_attempts: int = 3,
) -> EventConsumer:
    return EventConsumer(
        name,
        backend.db,
        backend.bus,
        [topic],
        handlers,
        dead_letter_suffix=".dlq",
        max_attempts=max_attempts,
        backoff=timedelta(milliseconds=10),
        metrics=counted.metrics,
    )


def new_name() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def observing(bus: EventBus, topic: str) -> AsyncIterator[BusConsumer]:
    """A reader of `topic` in a group of its own, joined before the test publishes, so
    it sees every message (the in-process bus keeps only what some group still needs)."""
    reader = bus.consumer([topic], group=f"test.reader.{uuid.uuid4().hex}")
    await reader.start()
    try:
        yield reader
    finally:
        await reader.stop()


async def take(reader: BusConsumer, count: int) -> list[Delivery]:
    got: list[Delivery] = []
    async with asyncio.timeout(DEADLINE):
        while len(got) < count:
            got += await reader.fetch(0.2)
    return got


async def test_a_duplicate_delivery_has_its_effect_once(backend: Backend) -> None:
    (topic, name), counted = await backend.fresh(), Counted()
    first, second = cloud_event(), cloud_event()
    # The relay's at-least-once: the same event (same id) published twice.
    await publish(backend.bus, topic, first, first, second)
    consumer = make_consumer(backend, topic, {"test.happened": recorder(name)}, counted, name)
    async with running(consumer) as run:

        async def all_seen() -> bool:
            return counted.events(name, "handled") + counted.events(name, "duplicate") == 3

        await run.until(all_seen)
    assert await effect_counts(backend.db, name) == {first.id: 1, second.id: 1}
    assert counted.events(name, "handled") == 2
    assert counted.events(name, "duplicate") == 1
    assert consumer.group == f"kabinet.{name}"


async def test_a_transient_failure_succeeds_after_retries(backend: Backend) -> None:
    (topic, name), counted = await backend.fresh(), Counted()
    record = recorder(name)
    failures = 2

    async def flaky(session: AsyncSession, event: CloudEvent) -> None:
        nonlocal failures
        await record(session, event)  # rolled back with the failure below
        if failures:
            failures -= 1
            raise ConnectionError("the downstream service blinked")

    event = cloud_event()
    await publish(backend.bus, topic, event)
    consumer = make_consumer(backend, topic, {"test.happened": flaky}, counted, name)
    async with running(consumer) as run:

        async def handled() -> bool:
            return counted.events(name, "handled") == 1

        await run.until(handled)
    assert await effect_counts(backend.db, name) == {event.id: 1}
    assert counted.retries(name) == 2
    assert counted.events(name, "dead_lettered") == 0


async def test_a_failing_handler_dead_letters_and_the_consumer_goes_on(backend: Backend) -> None:
    (topic, name), counted = await backend.fresh(), Counted()
    attempts = 0

    async def broken(session: AsyncSession, event: CloudEvent) -> None:
        nonlocal attempts
        attempts += 1
        raise RuntimeError(f"cannot handle {event.id}")

    handlers = {"test.broken": broken, "test.happened": recorder(name)}
    dlq = topic + ".dlq"
    bad, good = cloud_event("test.broken"), cloud_event()  # one subject: one partition, in order
    async with observing(backend.bus, topic) as source, observing(backend.bus, dlq) as dead_letters:
        await publish(backend.bus, topic, bad, good)
        async with running(make_consumer(backend, topic, handlers, counted, name)) as run:

            async def good_handled() -> bool:
                return counted.events(name, "handled") == 1

            await run.until(good_handled)
        [dead] = await take(dead_letters, 1)
        [original] = [d for d in await take(source, 2) if d.value == bad.to_json()]
    assert attempts == 3
    assert counted.events(name, "dead_lettered") == 1
    assert await effect_counts(backend.db, name) == {good.id: 1}
    assert dead.value == bad.to_json()
    assert dead.key == b"customer:1"
    headers = dict(dead.headers)
    assert headers["kabinet.error.class"] == b"RuntimeError"
    assert headers["kabinet.error.message"] == f"cannot handle {bad.id}".encode()
    assert headers["kabinet.attempts"] == b"3"
    assert headers["kabinet.original.topic"] == topic.encode()
    assert headers["kabinet.original.partition"] == str(original.partition).encode()
    if not isinstance(backend.bus, RabbitMQBus):  # its offsets are each reader's own count
        assert headers["kabinet.original.offset"] == str(original.offset).encode()
    assert headers["kabinet.consumer"] == name.encode()

    # The dead-lettered message was committed: the group's next member does not retry it.
    later = cloud_event()
    await publish(backend.bus, topic, later)
    async with running(make_consumer(backend, topic, handlers, counted, name)) as run:

        async def later_handled() -> bool:
            return counted.events(name, "handled") == 2

        await run.until(later_handled)
    assert attempts == 3


async def test_a_poison_message_goes_to_the_dead_letter_topic(backend: Backend) -> None:
    (topic, name), counted = await backend.fresh(), Counted()
    good = cloud_event()
    handlers = {"test.happened": recorder(name)}
    async with observing(backend.bus, topic + ".dlq") as dead_letters:
        await backend.bus.publish(topic, "customer:1", b"{not a cloud event")
        await publish(backend.bus, topic, good)
        async with running(make_consumer(backend, topic, handlers, counted, name)) as run:

            async def good_handled() -> bool:
                return counted.events(name, "handled") == 1

            await run.until(good_handled)
        [dead] = await take(dead_letters, 1)
    assert counted.events(name, "dead_lettered") == 1
    assert dead.value == b"{not a cloud event"
    headers = dict(dead.headers)
    assert headers["kabinet.error.class"] == b"InvalidEvent"
    assert headers["kabinet.attempts"] == b"0"


async def test_an_event_type_without_a_handler_is_skipped(backend: Backend) -> None:
    (topic, name), counted = await backend.fresh(), Counted()
    other, mine = cloud_event("test.unrelated"), cloud_event()
    await publish(backend.bus, topic, other, mine)
    handlers = {"test.happened": recorder(name)}
    async with running(make_consumer(backend, topic, handlers, counted, name)) as run:

        async def mine_handled() -> bool:
            return counted.events(name, "handled") == 1

        await run.until(mine_handled)
    assert counted.events(name, "ignored") == 1
    assert await effect_counts(backend.db, name) == {mine.id: 1}


async def test_stop_finishes_the_message_in_hand_and_a_restart_resumes_after_it(
    backend: Backend,
) -> None:
    (topic, name), counted = await backend.fresh(), Counted()
    record = recorder(name)
    handled: list[uuid.UUID] = []
    stop_on: uuid.UUID | None = None
    runs: list[Run] = []

    async def tracked(session: AsyncSession, event: CloudEvent) -> None:
        handled.append(event.id)
        if event.id == stop_on:
            runs[-1].stop.set()  # the stop request comes while this message is in hand
            await asyncio.sleep(0)
        await record(session, event)

    events = [cloud_event() for _ in range(3)]
    stop_on = events[1].id
    await publish(backend.bus, topic, *events)
    run = Run(make_consumer(backend, topic, {"test.happened": tracked}, counted, name))
    runs.append(run)
    async with asyncio.timeout(DEADLINE):
        await run.task
    assert handled == [events[0].id, events[1].id]
    assert await effect_counts(backend.db, name) == {events[0].id: 1, events[1].id: 1}
    assert run.consumer.lag() == {}

    await publish(backend.bus, topic, cloud_event())
    async with running(
        make_consumer(backend, topic, {"test.happened": tracked}, counted, name)
    ) as restarted:
        runs.append(restarted)

        async def all_handled() -> bool:
            return len(handled) == 4

        await restarted.until(all_handled)
    # Resumed after the last committed message: nothing handled twice, not even seen twice.
    assert handled[2] == events[2].id
    assert len(set(handled)) == 4
    assert counted.events(name, "duplicate") == 0


async def test_lag_is_reported(backend: Backend) -> None:
    (topic, name), counted = await backend.fresh(), Counted()
    record = recorder(name)
    blocked, release = asyncio.Event(), asyncio.Event()

    async def slow(session: AsyncSession, event: CloudEvent) -> None:
        blocked.set()
        await release.wait()
        await record(session, event)

    await publish(backend.bus, topic, cloud_event())
    consumer = make_consumer(backend, topic, {"test.happened": slow}, counted, name)
    async with running(consumer) as run:
        async with asyncio.timeout(DEADLINE):
            await blocked.wait()
        await publish(backend.bus, topic, cloud_event(), cloud_event())

        async def behind() -> bool:
            return sum(consumer.lag().values()) >= 2

        await run.until(behind)
        release.set()

        async def caught_up() -> bool:
            lag = counted.lag(name, topic)
            return counted.events(name, "handled") == 3 and bool(lag) and sum(lag.values()) == 0

        await run.until(caught_up)
    assert consumer.lag() == {}
    assert counted.lag(name, topic) == {}
