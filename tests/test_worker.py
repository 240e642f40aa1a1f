"""The worker: relay, purge and consumers together, in process and as `kabinet worker`."""

import asyncio
import os
import secrets
import signal
import sys
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import func, insert, select

from domains.billing.dunning import DunningPass
from domains.billing.invoice_run import RUN_LOCK
from domains.billing.models import BillingRun, BillingRunState, InvoiceStatus
from domains.billing.proration import Period
from domains.billing.reconcile import reconcile
from domains.clock import ManualClock
from domains.database import Database
from domains.events.bus import Delivery
from domains.outbox import OutboxEvent, record_event
from gateway.app import create_app
from gateway.services import Services
from gateway.worker import BillingTick, Worker
from tests.conftest import make_settings, migrated_database
from tests.kafka import free_port
from tests.servers import free_socket, serve
from tests.test_invoice_overdue import due_on
from tests.test_invoice_run import (
    ACTIVE,
    LONG_AGO,
    make_customer,
    make_tariff,
    top_up,
    wait_for_backend,
)
from tests.test_payments import balance_of, invoice_status
from tests.test_payments import make_customer as make_payer
from tests.test_relay import DEADLINE, until

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest_asyncio.fixture
async def worker_pg_url() -> AsyncIterator[str]:
    """A database of its own: the worker's relay publishes every unpublished row."""
    async with migrated_database("kabinet_worker") as url:
        yield url


class Collector:
    """A consumer that keeps what it reads (the worker's Runnable)."""

    def __init__(self, services: Services, topic: str) -> None:
        self.reader = services.bus.consumer([topic], group="collector")
        self.seen: list[Delivery] = []

    async def run(self, stop: asyncio.Event) -> None:
        await self.reader.start()
        try:
            while not stop.is_set():
                self.seen += await self.reader.fetch(wait=0.2)
        finally:
            await self.reader.stop()


async def test_the_embedded_worker_relays_to_its_consumers_and_stops_cleanly(
    sqlite_url: str, signing_key: bytes
):
    services = Services.from_settings(make_settings(sqlite_url, signing_key))
    collector = Collector(services, services.events.topics["billing"])
    worker = Worker(services, consumers=[collector])
    await services.bus.start()
    await worker.start()
    try:
        async with services.db.transaction() as tx:
            event_id = await record_event(tx, "payment.created", "customer:1", {"version": 1})
        await until(lambda: len(collector.seen) == 1)
        assert collector.seen[0].event().id == event_id

        async def marked() -> bool:  # the mark commits just after the broker's ack
            return await worker.relay.pending() == 0

        await until(marked)
    finally:
        await worker.stop()
        await services.bus.stop()
        await services.aclose()
    assert worker.relay.published_total == 1


@pytest.mark.slow
async def test_kabinet_worker_publishes_serves_metrics_and_stops_on_sigterm(
    worker_pg_url: str,
    kafka_bootstrap: str,
    signing_key: bytes,
):
    topic = f"test.billing.{secrets.token_hex(4)}"
    port = free_port()
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "KABINET_DATABASE_URL": worker_pg_url,
        "KABINET_JWT_PRIVATE_KEY": signing_key.decode(),
        "KABINET_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "KABINET_KAFKA_IDEMPOTENT_PRODUCER": "false",
        "KABINET_KAFKA_TOPICS": f'{{"billing": "{topic}", "identity": "i.{topic}", '
        f'"support": "s.{topic}"}}',
        "KABINET_WORKER_METRICS_PORT": str(port),
    }
    services = Services.from_settings(make_settings(worker_pg_url, signing_key))
    async with services.db.transaction() as tx:
        event_id = await record_event(tx, "payment.created", "customer:3", {"version": 1})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "worker", env=environment, cwd=REPO_ROOT
    )
    try:

        async def published() -> bool:
            async with services.db.connect() as conn:
                stmt = select(OutboxEvent.published_at).where(OutboxEvent.id == event_id)
                return (await conn.execute(stmt)).scalar_one() is not None

        await until(published)

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                return r.read().decode()

        async def serving() -> bool:
            try:
                return "kabinet_outbox_published_total 1.0" in await asyncio.to_thread(scrape)
            except OSError:
                return False

        await until(serving)
        assert "kabinet_outbox_relay_leader 1.0" in await asyncio.to_thread(scrape)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(DEADLINE):
            code = await process.wait()
        await services.aclose()
    assert code == 0


async def test_the_api_runs_the_embedded_worker_and_shows_its_metrics(
    sqlite_url: str, signing_key: bytes
):
    """Without Kafka the API process relays its own outbox; its /metrics says so. A row
    written by another process (no wake-up reaches the API's relay) goes by the fallback
    poll."""
    settings = make_settings(
        sqlite_url, signing_key, relay_fallback_poll_interval=timedelta(milliseconds=200)
    )
    app = create_app(settings)
    db = Database(sqlite_url)  # the test's own: the app's engine lives on the server's loop
    try:
        with serve(app, free_socket()) as base:
            async with db.transaction() as tx:
                await record_event(tx, "payment.created", "customer:1", {"version": 1})

            async def published() -> bool:
                async with db.connect() as conn:
                    stmt = select(OutboxEvent.id).where(OutboxEvent.published_at.is_(None))
                    return (await conn.execute(stmt)).first() is None

            await until(published)
            async with httpx.AsyncClient(base_url=base) as http:
                text = (await http.get("/metrics")).text
    finally:
        await db.dispose()
    assert "kabinet_outbox_published_total 1.0" in text
    assert "kabinet_outbox_relay_leader 1.0" in text


# The billing schedule (issue 13, points 1 and 6): the run when due, overdue marking.

MOSCOW = ZoneInfo("Europe/Moscow")
FEBRUARY = Period(date(2026, 2, 1))


def billing_worker(url: str, signing_key: bytes, clock: ManualClock, **settings: object) -> Worker:
    services = Services.from_settings(make_settings(url, signing_key, **settings), clock)
    return Worker(services, consumers=[], billing_schedule=True)


async def billing_runs(db: Database) -> list[tuple[date, BillingRunState, int]]:
    async with db.connect() as conn:
        stmt = select(BillingRun.period_start, BillingRun.state, BillingRun.invoices).order_by(
            BillingRun.id
        )
        return [tuple(row) for row in await conn.execute(stmt)]


async def test_a_tick_bills_the_month_once_due_and_marks_overdue_invoices(
    db_url: str, db: Database, signing_key: bytes
):
    tariff = await make_tariff(db, "300.00")
    await make_customer(db, [(tariff, LONG_AGO, None, ACTIVE)])
    _, [late] = await make_payer(db, "0.00", [("75.00", InvoiceStatus.ISSUED)])
    await due_on(db, [late], date(2026, 1, 31))
    # 1 February, 02:00 in Moscow: January's last day in the zone is over, February's run
    # is not due before 03:00.
    clock = ManualClock(datetime(2026, 1, 31, 23, 0, tzinfo=UTC))
    worker = billing_worker(db_url, signing_key, clock)
    try:
        # The dunning pass follows the marking: the late invoice's due-date reminder.
        assert await worker.billing_tick() == BillingTick(
            run=None, overdue=1, dunning=DunningPass(reminded=1, expired=0, suspended=0)
        )
        assert await billing_runs(db) == []
        clock.advance(timedelta(hours=1))  # 03:00 in Moscow
        ran = await worker.billing_tick()
        assert ran.run is not None
        assert ran.run.invoices == 1
        assert ran.overdue == 0  # right after the run; what it issued is due on the 11th
        # Within the hour, with February's run finished: nothing to do.
        clock.advance(timedelta(minutes=59))
        assert await worker.billing_tick() == BillingTick(run=None, overdue=None)
        # 12 February in Moscow: the run's invoice is overdue at the next hourly marking.
        clock.advance(timedelta(days=11))
        # Reminders: the late invoice's 3 days after, the run's on its due date.
        assert await worker.billing_tick() == BillingTick(
            run=None, overdue=1, dunning=DunningPass(reminded=2, expired=0, suspended=0)
        )
    finally:
        await worker.services.aclose()
    assert await billing_runs(db) == [(FEBRUARY.start, BillingRunState.FINISHED, 1)]
    assert await invoice_status(db, late) is InvoiceStatus.OVERDUE
    assert [str(problem) for problem in await reconcile(db)] == []


async def test_the_scheduled_run_pays_from_the_balance_as_the_setting_says(
    db_url: str, db: Database, signing_key: bytes
):
    tariff = await make_tariff(db, "300.00")
    customer = await make_customer(db, [(tariff, LONG_AGO, None, ACTIVE)])
    await top_up(db, customer, "120.00")
    clock = ManualClock(datetime(2026, 2, 1, 0, 0, tzinfo=UTC))  # 03:00 in Moscow
    worker = billing_worker(db_url, signing_key, clock, billing_autopay="partial")
    try:
        ran = await worker.billing_tick()
    finally:
        await worker.services.aclose()
    assert ran.run is not None
    assert (ran.run.invoices, ran.run.autopaid) == (1, 1)
    assert await balance_of(db, customer) == Decimal("0.00")
    assert [str(problem) for problem in await reconcile(db)] == []


@pytest.mark.postgres
async def test_a_worker_catches_up_a_missed_run_when_it_starts(
    worker_pg_url: str, signing_key: bytes
):
    """Down on the 1st, up on the 10th: its first tick bills February."""
    db = Database(worker_pg_url)
    tariff = await make_tariff(db, "300.00")
    await make_customer(db, [(tariff, LONG_AGO, None, ACTIVE)])
    worker = billing_worker(
        worker_pg_url, signing_key, ManualClock(datetime(2026, 2, 10, 9, 0, tzinfo=UTC))
    )
    await worker.services.bus.start()
    await worker.start()
    try:

        async def billed() -> bool:
            return await billing_runs(db) == [(FEBRUARY.start, BillingRunState.FINISHED, 1)]

        await until(billed)
    finally:
        await worker.stop()
        await worker.services.bus.stop()
        await worker.services.aclose()
        await db.dispose()


@pytest.mark.postgres
async def test_a_second_worker_waits_for_the_first_run_then_bills_nothing(
    worker_pg_url: str, signing_key: bytes
):
    db = Database(worker_pg_url)
    tariff = await make_tariff(db, "300.00")
    for _ in range(3):
        await make_customer(db, [(tariff, LONG_AGO, None, ACTIVE)])
    clock = ManualClock(datetime(2026, 2, 1, 1, 0, tzinfo=UTC))
    workers = [billing_worker(worker_pg_url, signing_key, clock) for _ in range(2)]
    try:
        async with db.connect() as holder:
            await holder.execute(select(func.pg_advisory_lock(RUN_LOCK)))
            ticks = [asyncio.create_task(worker.billing_tick()) for worker in workers]
            await wait_for_backend(db, "advisory", "%pg_advisory_lock%", count=2)
            await holder.execute(select(func.pg_advisory_unlock(RUN_LOCK)))
        runs = [tick.run for tick in await asyncio.gather(*ticks)]
    finally:
        for worker in workers:
            await worker.services.aclose()
    assert sorted(run.invoices for run in runs if run is not None) == [3]
    assert runs.count(None) == 1
    assert await billing_runs(db) == [(FEBRUARY.start, BillingRunState.FINISHED, 3)]
    await db.dispose()


@pytest.mark.postgres
async def test_a_stopping_worker_ends_its_run_after_the_batch(
    worker_pg_url: str, signing_key: bytes
):
    """SIGTERM's stop reaches a worker mid-batch: the batch commits, the run ends there
    (recorded failed), the worker stops; its next start bills what is left, nothing here."""
    db = Database(worker_pg_url)
    tariff = await make_tariff(db, "300.00")
    await make_customer(db, [(tariff, LONG_AGO, None, ACTIVE)])
    # A run a killed runner left `running`: carried on, its batch ends with an UPDATE of this
    # row, which the lock below holds back.
    async with db.transaction() as session:
        left = insert(BillingRun).values(
            period_start=FEBRUARY.start,
            period_end=FEBRUARY.end,
            state=BillingRunState.RUNNING,
            started_at=datetime(2026, 2, 1, tzinfo=UTC),
            invoices=0,
            lines=0,
            amount=Decimal("0.00"),
            autopaid=0,
        )
        run_id = (await session.execute(left.returning(BillingRun.id))).scalar_one()
    clock = ManualClock(datetime(2026, 2, 2, 9, 0, tzinfo=UTC))
    worker = billing_worker(worker_pg_url, signing_key, clock)
    await worker.services.bus.start()
    try:
        async with db.transaction() as session:
            await session.execute(
                select(BillingRun.id).where(BillingRun.id == run_id).with_for_update()
            )
            await worker.start()
            await wait_for_backend(db, "transactionid", "UPDATE billing_runs%")
            stopping = asyncio.create_task(worker.stop())
            await until(lambda: worker._stop.is_set())
        async with asyncio.timeout(DEADLINE):
            await stopping
        assert await billing_runs(db) == [(FEBRUARY.start, BillingRunState.FAILED, 1)]

        restarted = billing_worker(worker_pg_url, signing_key, clock)
        again = await restarted.billing_tick()
        await restarted.services.aclose()
        assert again.run is not None
        assert again.run.invoices == 0
    finally:
        await worker.services.bus.stop()
        await worker.services.aclose()
    assert await billing_runs(db) == [
        (FEBRUARY.start, BillingRunState.FAILED, 1),
        (FEBRUARY.start, BillingRunState.FINISHED, 0),
    ]
    assert [str(problem) for problem in await reconcile(db)] == []
    await db.dispose()
