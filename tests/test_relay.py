"""The outbox relay on PostgreSQL and Tansu, and on SQLite with the in-process bus."""

import asyncio
import contextlib
import json
import os
import secrets
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry
from sqlalchemy import (
    Boolean,
    Integer,
    String,
    column,
    delete,
    func,
    insert,
    select,
    table,
    update,
)

from adapters.kafka_bus import KafkaBus
from adapters.prometheus_consumer_metrics import PrometheusConsumerMetrics
from adapters.rabbitmq_bus import RabbitMQBus
from domains.analytics.consumer import CONSUMER_NAME, HANDLERS
from domains.analytics.models import PaymentsDaily
from domains.billing import events as billing_events
from domains.database import Database
from domains.events.bus import BusConsumer, Delivery, EventBus
from domains.events.cloudevent import CloudEvent
from domains.events.consumer import EventConsumer, group_of
from domains.events.memory_bus import MemoryBus
from domains.events.relay import RELAY_LOCK_KEY, OutboxRelay
from domains.identity.models import User
from domains.identity.password_reset import RESET_REQUESTED, reset_link_token
from domains.identity.passwords import hash_password
from domains.outbox import OutboxEvent, record_event
from gateway.app import create_app
from tests.conftest import app_client, catalog_of, make_settings, migrated_database
from tests.kafka import TansuBroker
from tests.rabbitmq import RabbitMQServer

REPO_ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 60.0
SOURCE = "urn:kabinet"
PASSWORD = "an old password, long enough"
NEW = "a new password, long enough"
REQUEST_RESET = 'mutation { requestPasswordReset(email: "%s") }'
RESET_PASSWORD = """mutation($token: String!, $password: String!) {
  resetPassword(token: $token, newPassword: $password) }"""
outbox = OutboxEvent.__table__
pg_locks = table(
    "pg_locks",
    column("locktype", String),
    column("classid", Integer),
    column("objid", Integer),
    column("pid", Integer),
    column("granted", Boolean),
    column("database", Integer),
)
pg_database = table("pg_database", column("oid", Integer), column("datname", String))


@pytest_asyncio.fixture(scope="module")
async def relay_pg_url() -> AsyncIterator[str]:
    """A database of the relay tests' own: a relay publishes every unpublished row."""
    async with migrated_database("kabinet_relay") as url:
        yield url


@pytest_asyncio.fixture
async def pg_db(relay_pg_url: str) -> AsyncIterator[Database]:
    db = Database(relay_pg_url, pool_size=5)
    async with db.transaction() as tx:
        await tx.execute(delete(outbox))
    yield db
    await db.dispose()


@pytest.fixture
def topics() -> dict[str, str]:
    run = secrets.token_hex(4)
    return {domain: f"test.{domain}.{run}" for domain in ("billing", "identity", "support")}


def kafka_bus(bootstrap: str, **options: Any) -> KafkaBus:
    return KafkaBus(
        bootstrap,
        client_id="kabinet-test",
        idempotent=False,  # Tansu refuses InitProducerId
        partitions=4,
        session_timeout=6.0,
        **options,
    )


@pytest_asyncio.fixture
async def kafka(kafka_bootstrap: str) -> AsyncIterator[KafkaBus]:
    bus = kafka_bus(kafka_bootstrap)
    await bus.start()
    yield bus
    await bus.stop()


def relay_of(db: Database, bus: EventBus, topics: dict[str, str], **options: Any) -> OutboxRelay:
    return OutboxRelay(db, bus, catalog=catalog_of(topics, SOURCE), **options)


async def pay(db: Database, customer_id: int, amount: str, invoice_id: int | None = None) -> None:
    """What a payment leaves in the outbox: its events, committed together."""
    async with db.transaction() as tx:
        await billing_events.payment_created(
            tx,
            payment_id=secrets.randbelow(10**9),
            invoice_id=invoice_id,
            customer_id=customer_id,
            amount=Decimal(amount),
            currency="RUB",
            method="balance",
            status="succeeded",
        )
        await billing_events.balance_changed(
            tx,
            customer_id=customer_id,
            balance=Decimal(amount),
            delta=Decimal(amount),
            currency="RUB",
            reason="top_up",
        )


async def rows(db: Database) -> list[Any]:
    async with db.connect() as conn:
        stmt = select(outbox).order_by(outbox.c.occurred_at, outbox.c.id)
        return list((await conn.execute(stmt)).all())


async def read_topic(bus: EventBus, topic: str, count: int) -> list[Delivery]:
    """Everything on `topic` from the start (a new group), once `count` messages came."""
    consumer = bus.consumer([topic], group=f"reader-{secrets.token_hex(4)}")
    await consumer.start()
    seen: list[Delivery] = []
    try:
        async with asyncio.timeout(DEADLINE):
            while len(seen) < count:
                seen += await consumer.fetch(wait=0.5)
        seen += await consumer.fetch(wait=0.5)  # anything beyond `count` shows up too
    finally:
        await consumer.stop()
    return seen


async def until(condition: Callable[[], Any], deadline: float = DEADLINE) -> None:
    """Awaits `condition()` (a coroutine or a value) until true, failing after `deadline`."""
    async with asyncio.timeout(deadline):
        while True:
            result = condition()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.05)


def by_subject(deliveries: list[Delivery]) -> dict[str, list[CloudEvent]]:
    events: dict[str, list[CloudEvent]] = {}
    for delivery in deliveries:
        event = delivery.event()
        assert delivery.key == event.subject.encode()
        events.setdefault(event.subject, []).append(event)
    return events


async def test_rows_become_cloudevents_on_their_domain_topic_in_order(
    pg_db: Database, kafka: KafkaBus, topics: dict[str, str]
):
    for round_ in range(3):
        for customer in (1, 2, 3):
            await pay(pg_db, customer, f"{round_ + 1}.00")
    async with pg_db.transaction() as tx:
        await record_event(tx, "identity.password_changed", "user:9", {"version": 1, "by": "me"})
    relay = relay_of(pg_db, kafka, topics)
    assert await relay.pending() == 19

    assert await relay.run_once() == 19
    await relay.close()

    written = await rows(pg_db)
    assert all(row.published_at is not None for row in written)
    assert await relay.pending() == 0
    assert relay.published_total == 19
    billing = await read_topic(kafka, topics["billing"], 18)
    assert len(billing) == 18
    events = by_subject(billing)
    for customer in (1, 2, 3):
        mine = [row for row in written if row.subject == f"customer:{customer}"]
        assert [e.id for e in events[f"customer:{customer}"]] == [row.id for row in mine]
    first = billing[0]
    raw = json.loads(first.value)
    assert set(raw) == {
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "datacontenttype",
        "data",
    }
    assert raw["specversion"] == "1.0"
    assert raw["datacontenttype"] == "application/json"
    assert raw["source"] == "urn:kabinet:billing"
    row = next(row for row in written if row.id == uuid.UUID(raw["id"]))
    assert first.event() == CloudEvent(
        id=row.id,
        type=row.type,
        source="urn:kabinet:billing",
        subject=row.subject,
        time=row.occurred_at,
        data=row.payload,
    )
    [identity] = await read_topic(kafka, topics["identity"], 1)
    assert identity.event().type == "identity.password_changed"
    assert identity.event().source == "urn:kabinet:identity"


async def test_a_rolled_back_transaction_publishes_nothing(
    pg_db: Database, kafka: KafkaBus, topics: dict[str, str]
):
    async def refused_payment() -> None:
        async with pg_db.transaction() as tx:
            await record_event(tx, "payment.created", "customer:4", {"version": 1})
            raise RuntimeError("refused")

    with pytest.raises(RuntimeError, match="refused"):
        await refused_payment()
    relay = relay_of(pg_db, kafka, topics)
    assert await relay.run_once() == 0
    await relay.close()
    assert await rows(pg_db) == []


async def test_a_password_reset_leaves_no_usable_token_in_any_event(
    pg_db: Database,
    relay_pg_url: str,
    kafka: KafkaBus,
    topics: dict[str, str],
    signing_key: bytes,
):
    """Issue 12, point 5: the reset token sat in the outbox for days and went to Kafka and
    the dead-letter topics. Now the event names the request; the link's token, derived from
    it under the deployment's key, is in none of them, and it does reset the password."""
    email = f"reset-{secrets.token_hex(4)}@example.com"
    async with pg_db.transaction() as tx:
        await tx.execute(insert(users).values(email=email, password_hash=hash_password(PASSWORD)))
    settings = make_settings(relay_pg_url, signing_key, worker_in_process=False)
    app = create_app(settings)
    async for client in app_client(app):
        asked = await client.post("/graphql", json={"query": REQUEST_RESET % email})
        assert asked.json() == {"data": {"requestPasswordReset": True}}
        relay = relay_of(pg_db, kafka, topics)
        assert await relay.run_once() == 1
        await relay.close()
        [event] = [row.payload for row in await rows(pg_db) if row.type == RESET_REQUESTED]
        token = reset_link_token(
            app.state.services.auth.reset_link_key, uuid.UUID(event["reset_id"])
        )
        # A consumer that fails on it sends it to the dead-letter topic, as a broken
        # notifier would.
        consumer = EventConsumer(
            "notifier",
            pg_db,
            kafka,
            [topics["identity"]],
            {RESET_REQUESTED: _refuse},
            dead_letter_suffix=".dlq",
            max_attempts=1,
            backoff=timedelta(milliseconds=10),
        )
        await kafka.ensure_topics([topics["identity"] + ".dlq"])
        stop = asyncio.Event()
        consuming = asyncio.create_task(consumer.run(stop))
        try:
            dead = await read_topic(kafka, topics["identity"] + ".dlq", 1)
        finally:
            stop.set()
            await consuming
        published = await read_topic(kafka, topics["identity"], 1)
        stored = [json.dumps(row.payload) for row in await rows(pg_db)]
        everywhere = stored + [d.value.decode() for d in (*published, *dead)]
        assert len(everywhere) == 3  # the outbox row, the topic's message, the dead letter
        assert all(token not in text for text in everywhere)

        reset = await client.post(
            "/graphql",
            json={"query": RESET_PASSWORD, "variables": {"token": token, "password": NEW}},
        )
        assert reset.json() == {"data": {"resetPassword": True}}


async def _refuse(*_args: Any) -> None:
    raise RuntimeError("the notifier is down")


users = User.__table__


async def test_only_the_relay_holding_the_lock_publishes(
    pg_db: Database, kafka: KafkaBus, topics: dict[str, str]
):
    for customer in range(20):
        await pay(pg_db, customer, "1.00")
    first, second = relay_of(pg_db, kafka, topics), relay_of(pg_db, kafka, topics)
    stop = asyncio.Event()
    runs = [asyncio.create_task(relay.run(stop)) for relay in (first, second)]
    try:
        await until(lambda: _none_pending(pg_db))
        assert first.is_leader != second.is_leader
        leader, standby = (first, second) if first.is_leader else (second, first)
        assert leader.published_total == 40
        assert standby.published_total == 0
        await pay(pg_db, 99, "2.00")
        await until(lambda: _none_pending(pg_db))
        assert standby.published_total == 0
    finally:
        stop.set()
        await asyncio.gather(*runs)
    delivered = await read_topic(kafka, topics["billing"], 42)
    assert len(delivered) == 42, "each event once: the standby published none"

    # The lock released (the leader stopped), the other relay takes over.
    await pay(pg_db, 100, "3.00")
    assert await standby.run_once() == 2
    await standby.close()


async def _none_pending(db: Database) -> bool:
    async with db.connect() as conn:
        stmt = select(outbox.c.id).where(outbox.c.published_at.is_(None)).limit(1)
        return (await conn.execute(stmt)).first() is None


async def test_a_relay_stands_by_while_another_holds_the_lock(
    pg_db: Database, kafka: KafkaBus, topics: dict[str, str]
):
    await pay(pg_db, 1, "1.00")
    holder = await pg_db.engine.connect()
    try:
        async with holder.begin():
            await holder.execute(select(func.pg_advisory_lock(RELAY_LOCK_KEY)))
        relay = relay_of(pg_db, kafka, topics)
        assert await relay.run_once() == 0
        assert not relay.is_leader
    finally:
        await holder.invalidate()  # closed for good: a pooled connection would keep the lock
        await holder.close()
    assert await relay.run_once() == 2
    assert relay.is_leader
    await relay.close()


KILLED_AFTER_SENDING = """
import asyncio, json, sys
from adapters.kafka_bus import KafkaBus
from domains.database import Database
from domains.events.relay import OutboxRelay
from tests.conftest import catalog_of


class DiesAfterSending(KafkaBus):
    async def publish_many(self, *args, **kwargs):
        await super().publish_many(*args, **kwargs)
        print("sent", flush=True)
        await asyncio.Event().wait()  # the test kills the process here, before the mark


async def main(url, bootstrap, topics):
    bus = DiesAfterSending(bootstrap, client_id="doomed", idempotent=False, partitions=4)
    relay = OutboxRelay(Database(url), bus, catalog=catalog_of(topics))
    await relay.run_once()


asyncio.run(main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3])))
"""


async def test_a_relay_killed_between_send_and_mark_publishes_the_event_again(
    pg_db: Database, relay_pg_url: str, kafka: KafkaBus, topics: dict[str, str]
):
    """A real relay process is SIGKILLed once the broker acknowledged its first event: the
    row stays unpublished, the next relay sends it again under the same event id, and a
    consumer counts it once."""
    await pay(pg_db, 7, "5.00", invoice_id=70)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        KILLED_AFTER_SENDING,
        relay_pg_url,
        kafka.bootstrap,
        json.dumps(topics),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        cwd=REPO_ROOT,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(DEADLINE):
            line = await process.stdout.readline()
    finally:
        process.kill()
        await process.wait()
    assert line == b"sent\n"
    relay = relay_of(pg_db, kafka, topics)
    assert await relay.pending() == 2
    await until(relay.run_once)  # the killed relay's lock goes with its connection
    await relay.close()

    first, second = await rows(pg_db)
    delivered = [d.event().id for d in await read_topic(kafka, topics["billing"], 3)]
    assert delivered == [first.id, first.id, second.id]

    registry = CollectorRegistry()
    consumer = EventConsumer(
        CONSUMER_NAME,
        pg_db,
        kafka,
        [topics["billing"]],
        HANDLERS,
        dead_letter_suffix=".dlq",
        max_attempts=2,
        backoff=timedelta(milliseconds=10),
        metrics=PrometheusConsumerMetrics(registry),
    )

    def outcomes() -> dict[str, float]:
        return {
            outcome: registry.get_sample_value(
                "kabinet_consumer_events_total", {"consumer": "analytics", "outcome": outcome}
            )
            or 0
            for outcome in ("handled", "duplicate", "ignored")
        }

    stop = asyncio.Event()
    consuming = asyncio.create_task(consumer.run(stop))
    try:
        await until(lambda: sum(outcomes().values()) == 3)
    finally:
        stop.set()
        await consuming
    assert outcomes() == {"handled": 1, "duplicate": 1, "ignored": 1}
    async with pg_db.connect() as conn:
        counted = (await conn.execute(select(PaymentsDaily.payments, PaymentsDaily.amount))).all()
    assert counted == [(1, Decimal("5.00"))]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[TansuBroker]:
    broker = TansuBroker(tmp_path)
    broker.start()
    yield broker
    broker.stop()


async def test_events_made_while_the_broker_is_down_arrive_once_it_is_back(
    pg_db: Database, broker: TansuBroker, topics: dict[str, str]
):
    bus = kafka_bus(broker.bootstrap, request_timeout=2.0)
    await bus.start()
    relay = relay_of(pg_db, bus, topics, max_backoff=0.5)
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    try:
        await pay(pg_db, 1, "1.00")
        await until(lambda: _none_pending(pg_db))

        await asyncio.to_thread(broker.stop)
        for customer in (1, 2, 1, 3):
            await pay(pg_db, customer, "2.00")
        await until(lambda: relay.last_error is not None)
        assert await relay.pending() == 8

        # Tansu keeps its log in memory: it comes back empty, without the topics.
        await asyncio.to_thread(broker.start)
        await until(lambda: _none_pending(pg_db))
    finally:
        stop.set()
        await running
    try:
        delivered = await read_topic(bus, topics["billing"], 8)
    finally:
        await bus.stop()
    outage = (await rows(pg_db))[2:]
    events = by_subject(delivered)
    for customer in (1, 2, 3):
        subject = f"customer:{customer}"
        assert [e.id for e in events[subject]] == [r.id for r in outage if r.subject == subject]


@pytest.fixture
def rabbitmq_server(tmp_path: Path) -> Iterator[RabbitMQServer]:
    """A RabbitMQ node of the test's own, to stop and start (never the shared one)."""
    # Installed on every development and CI machine beside the shared node: its absence is
    # a broken machine, not a test to leave out.
    assert RabbitMQServer.available(), "rabbitmq-server is not installed"
    server = RabbitMQServer(tmp_path)
    server.start()
    yield server
    server.stop()


async def _payments_counted(db: Database) -> tuple[int, Decimal]:
    async with db.connect() as conn:
        stmt = select(
            func.coalesce(func.sum(PaymentsDaily.payments), 0), func.sum(PaymentsDaily.amount)
        )
        payments, amount = (await conn.execute(stmt)).one()
    return int(payments), amount or Decimal(0)


async def test_a_rabbitmq_restart_during_a_stream_of_payments_loses_and_doubles_nothing(
    pg_db: Database, rabbitmq_server: RabbitMQServer, topics: dict[str, str]
):
    """The node is down for as long as its restart takes, or KABINET_TEST_BROKER_OUTAGE
    seconds more (the issue's 30 s: a run by hand, not `make test`'s)."""
    reader = f"kabinet.reader-{secrets.token_hex(4)}"
    # The deployment's groups: their queues exist before the first event is published.
    bus = RabbitMQBus(
        rabbitmq_server.url,
        partitions=4,
        dead_letter_suffix=".dlq",
        groups={reader: [topics["billing"]], group_of(CONSUMER_NAME): [topics["billing"]]},
        request_timeout=2.0,
    )
    await bus.start()
    counted_before = await _payments_counted(pg_db)
    relay = relay_of(pg_db, bus, topics, max_backoff=0.5)
    analytics = EventConsumer(
        CONSUMER_NAME,
        pg_db,
        bus,
        [topics["billing"]],
        HANDLERS,
        dead_letter_suffix=".dlq",
        max_attempts=2,
        backoff=timedelta(milliseconds=10),
    )
    stop, back = asyncio.Event(), asyncio.Event()
    running = [asyncio.create_task(relay.run(stop)), asyncio.create_task(analytics.run(stop))]

    async def stream() -> None:
        """Payments keep coming before, during and after the outage."""
        n = 0
        while not back.is_set() or n < 80:
            await pay(pg_db, n % 5, "1.00", invoice_id=n)  # paying an invoice: counted
            await asyncio.sleep(0.05)
            n += 1

    paying = asyncio.create_task(stream())
    try:
        await until(lambda: relay.published_total >= 10)
        await asyncio.to_thread(rabbitmq_server.stop)
        await until(lambda: relay.last_error is not None)
        await asyncio.sleep(float(os.environ.get("KABINET_TEST_BROKER_OUTAGE", "0")))
        # Durable queues, persistent messages: the node comes back with what it confirmed.
        await asyncio.to_thread(rabbitmq_server.start)
        back.set()
        await paying
        await until(lambda: _none_pending(pg_db))
        made = [row for row in await rows(pg_db) if row.type == "payment.created"]
        # The analytics consumer ran through it all: each payment counted once.
        expected = (counted_before[0] + len(made), counted_before[1] + len(made))

        async def all_counted() -> bool:
            return await _payments_counted(pg_db) == expected

        await until(all_counted, deadline=DEADLINE)
    finally:
        paying.cancel()
        stop.set()
        await asyncio.gather(*running)
    consumer = bus.consumer([topics["billing"]], group=reader)
    await consumer.start()
    delivered: list[Delivery] = []
    try:
        async with asyncio.timeout(DEADLINE):
            while len({d.event().id for d in delivered}) < 2 * len(made):
                batch = await consumer.fetch(wait=0.5)
                delivered += batch
                if batch:
                    await consumer.commit({(d.topic, d.partition): d.offset + 1 for d in batch})
    finally:
        await consumer.stop()
        await bus.stop()
    # At least once: an event whose confirm the outage cut is published again; consumers
    # drop the second copy by its id. Each subject's events, first copies, in order.
    firsts: dict[uuid.UUID, CloudEvent] = {}
    for delivery in delivered:
        firsts.setdefault(delivery.event().id, delivery.event())
    assert set(firsts) == {row.id for row in await rows(pg_db)}
    events = by_subject(list(delivered))
    for customer in range(5):
        subject = f"customer:{customer}"
        seen = list(dict.fromkeys(e.id for e in events[subject]))
        assert seen == [r.id for r in await rows(pg_db) if r.subject == subject]


async def test_the_embedded_relay_publishes_to_the_in_process_bus(
    sqlite_url: str, topics: dict[str, str]
):
    db = Database(sqlite_url)
    bus = MemoryBus(partitions=4)
    analytics = bus.consumer([topics["billing"]], group="analytics")
    await analytics.start()
    relay = relay_of(db, bus, topics)
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    try:
        for customer in (1, 2, 1):
            await pay(db, customer, "4.00")
        seen: list[Delivery] = []
        async with asyncio.timeout(DEADLINE):
            while len(seen) < 6:
                seen += await analytics.fetch(wait=1.0)
    finally:
        stop.set()
        await running
    written = await rows(db)
    events = by_subject(seen)
    for subject in ("customer:1", "customer:2"):
        assert [e.id for e in events[subject]] == [r.id for r in written if r.subject == subject]
    assert await relay.pending() == 0

    # Old published rows go; recent and unpublished ones stay.
    async with db.transaction() as tx:
        await tx.execute(
            update(outbox)
            .where(outbox.c.id == written[0].id)
            .values(published_at=written[0].occurred_at - timedelta(days=30))
        )
        await record_event(tx, "payment.created", "customer:5", {"version": 1})
    assert await relay.purge_published(timedelta(days=7)) == 1
    assert len(await rows(db)) == 6
    await db.dispose()


async def test_one_transactions_events_keep_their_order_when_the_clock_stands_still(
    sqlite_url: str, topics: dict[str, str], monkeypatch: pytest.MonkeyPatch
):
    """Ids are random: events of one unit of work must not tie on `occurred_at`, even with
    a coarse clock or one stepped back."""
    moment = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    monkeypatch.setattr("domains.outbox.utcnow", lambda: moment)
    db = Database(sqlite_url)
    bus = MemoryBus(partitions=1)
    reader = bus.consumer([topics["billing"]], group="order")
    await reader.start()
    try:
        async with db.transaction() as tx:
            written = [
                await record_event(tx, "payment.created", "customer:1", {"version": 1})
                for _ in range(50)
            ]
        relay = relay_of(db, bus, topics)
        while await relay.run_once():
            pass
        seen: list[Delivery] = []
        async with asyncio.timeout(DEADLINE):
            while len(seen) < len(written):
                seen += await reader.fetch(wait=1.0)
        await relay.close()
    finally:
        await reader.stop()
        await db.dispose()
    assert [d.event().id for d in seen] == written


# Woken, not polling: the fallback poll is set far beyond the tests' deadline, so only the
# wake-up can publish in time.
NEVER_POLLS = 3600.0


@contextlib.asynccontextmanager
async def running_relay(relay: OutboxRelay) -> AsyncIterator[None]:
    """The relay runs, leads and has read the outbox empty before the block starts."""
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    try:
        await until(lambda: relay.caught_up)
        yield
    finally:
        stop.set()
        await running


async def next_events(reader: BusConsumer, count: int) -> list[CloudEvent]:
    seen: list[Delivery] = []
    async with asyncio.timeout(DEADLINE):
        while len(seen) < count:
            seen += await reader.fetch(wait=1.0)
    return [delivery.event() for delivery in seen]


async def test_a_commit_wakes_the_relay_on_postgresql(pg_db: Database, topics: dict[str, str]):
    bus = MemoryBus(partitions=4)
    reader = bus.consumer([topics["billing"]], group="woken")
    await reader.start()
    relay = relay_of(pg_db, bus, topics, fallback_poll_interval=NEVER_POLLS)
    async with running_relay(relay):
        async with pg_db.transaction() as tx:
            first = await record_event(tx, "payment.created", "customer:1", {"version": 1})
            second = await record_event(tx, "payment.created", "customer:1", {"version": 1})
        assert [e.id for e in await next_events(reader, 2)] == [first, second]
        await pay(pg_db, 2, "1.00")
        assert len(await next_events(reader, 2)) == 2
    await reader.stop()


async def _leader_pid(db: Database) -> int | None:
    """The backend holding the relay's advisory lock (a bigint key: two 32-bit halves) in
    this test's database: the same lock in another database (another test run's, a
    bench's) is another relay's, which this test must not kill."""
    this_database = (
        select(pg_database.c.oid)
        .where(pg_database.c.datname == func.current_database())
        .scalar_subquery()
    )
    async with db.connect() as conn:
        return await conn.scalar(
            select(pg_locks.c.pid).where(
                pg_locks.c.database == this_database,
                pg_locks.c.locktype == "advisory",
                pg_locks.c.classid == RELAY_LOCK_KEY >> 32,
                pg_locks.c.objid == RELAY_LOCK_KEY & 0xFFFF_FFFF,
                pg_locks.c.granted,
            )
        )


async def test_the_relay_listens_again_after_its_connection_is_killed(
    pg_db: Database, topics: dict[str, str]
):
    bus = MemoryBus(partitions=4)
    reader = bus.consumer([topics["billing"]], group="relisten")
    await reader.start()
    relay = relay_of(pg_db, bus, topics, fallback_poll_interval=NEVER_POLLS)
    async with running_relay(relay):
        killed = await _leader_pid(pg_db)
        assert killed is not None
        async with pg_db.connect() as conn:
            assert await conn.scalar(select(func.pg_terminate_backend(killed)))

        async def leads_again() -> bool:
            pid = await _leader_pid(pg_db)
            return pid is not None and pid != killed and relay.caught_up

        await until(leads_again)
        async with pg_db.transaction() as tx:
            event_id = await record_event(tx, "payment.created", "customer:3", {"version": 1})
        [event] = await next_events(reader, 1)
        assert event.id == event_id
    await reader.stop()


async def test_the_embedded_relay_is_woken_by_the_writing_process(
    sqlite_url: str, topics: dict[str, str]
):
    db = Database(sqlite_url)
    bus = MemoryBus(partitions=4)
    reader = bus.consumer([topics["billing"]], group="embedded")
    await reader.start()
    relay = relay_of(db, bus, topics, fallback_poll_interval=NEVER_POLLS)
    try:
        async with running_relay(relay):
            await pay(db, 1, "1.00")
            assert len(await next_events(reader, 2)) == 2
    finally:
        await reader.stop()
        await db.dispose()
    assert not db.events_committed, "a stopped relay is not woken any more"


async def test_the_wake_up_comes_after_the_commit_and_not_after_a_rollback(sqlite_url: str):
    """Whoever is woken sees the rows; a unit of work that rolled back wakes nobody."""
    db = Database(sqlite_url)
    seen: list[int] = []
    woken = asyncio.Event()
    db.events_committed.add(woken.set)

    async def count_when_woken() -> None:
        await woken.wait()
        async with db.connect() as conn:
            seen.append(await conn.scalar(select(func.count()).select_from(outbox)))

    async def refused_payment() -> None:
        async with db.transaction() as tx:
            await record_event(tx, "payment.created", "customer:1", {"version": 1})
            raise RuntimeError("refused")

    counting = asyncio.create_task(count_when_woken())
    try:
        with pytest.raises(RuntimeError, match="refused"):
            await refused_payment()
        assert not woken.is_set()
        async with db.transaction() as tx:
            await record_event(tx, "payment.created", "customer:1", {"version": 1})
        async with asyncio.timeout(DEADLINE):
            await counting
    finally:
        counting.cancel()
        await db.dispose()
    assert seen == [1]
