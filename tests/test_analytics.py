"""Analytics end to end: billing actions -> outbox -> relay -> bus -> consumer -> staff GraphQL.

Days are UTC days of the events' times, so the tests give their events fixed times (on
both sides of a midnight) rather than the hour the suite happens to run at.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import TypeVar

import httpx
import pytest_asyncio
from prometheus_client import CollectorRegistry
from sqlalchemy import select, update

from adapters.prometheus_consumer_metrics import PrometheusConsumerMetrics
from domains.analytics.consumer import CONSUMER_NAME, HANDLERS
from domains.analytics.invoices import invoice_statistics
from domains.analytics.payments import on_payment_created, payment_statistics
from domains.billing.autopay import AutopayMode
from domains.billing.invoice_run import run_invoices
from domains.billing.models import Invoice, PaymentMethod
from domains.billing.pay_invoice import pay_invoice
from domains.billing.proration import Period
from domains.billing.refund_payment import refund_payment
from domains.billing.settlement import PAYABLE
from domains.clock import ManualClock
from domains.customers.models import Customer
from domains.database import Database
from domains.events.cloudevent import CloudEvent
from domains.events.consumer import EventConsumer
from domains.events.memory_bus import MemoryBus
from domains.events.relay import OutboxRelay
from domains.identity.models import Role, User
from domains.identity.viewer import Viewer
from domains.outbox import OutboxEvent
from gateway.app import create_app
from gateway.services import event_catalog
from gateway.settings import Settings
from tests.conftest import (
    app_client,
    graphql,
    load_demo_into,
    login,
    make_settings,
    migrated_database,
)
from tests.test_invoice_run import ACTIVE, LONG_AGO, MOSCOW, make_customer, make_tariff

DEADLINE = 30.0
MIDNIGHT = datetime(2026, 3, 2, tzinfo=UTC)
SECOND = timedelta(seconds=1)
T = TypeVar("T")

outbox = OutboxEvent.__table__

STATISTICS = """
query Statistics($from: Date!, $to: Date!) {
  paymentStatistics(from: $from, to: $to) {
    from
    to
    days { day method payments amount { amount currency } refunds
           refunded { amount currency } revenue { amount currency } }
    totals { payments amount { amount currency } refunds refunded { amount } revenue { amount } }
  }
}
"""

INVOICE_STATISTICS = """
query Invoices($from: Date!, $to: Date!) {
  invoiceStatistics(from: $from, to: $to) {
    from
    to
    days { day invoices billed { amount currency } }
    totals { invoices billed { amount currency } }
  }
}
"""


@pytest_asyncio.fixture(scope="module")
async def demo_url() -> AsyncIterator[str]:
    async with migrated_database("kabinet_analytics") as url:
        await load_demo_into(url)
        yield url


@pytest_asyncio.fixture
async def client(demo_url: str, signing_key: bytes) -> AsyncIterator[httpx.AsyncClient]:
    async for client in app_client(create_app(make_settings(demo_url, signing_key))):
        yield client


async def payer(db: Database) -> tuple[Viewer, int, int]:
    """A demo customer with money on the balance and a payable invoice, and an admin."""
    async with db.connect() as conn:
        row = (
            await conn.execute(
                select(Customer.user_id, Customer.id, Invoice.id)
                .join(Invoice, Invoice.customer_id == Customer.id)
                .where(Invoice.status.in_(PAYABLE), Customer.balance >= Decimal("100.00"))
                .where(Invoice.amount >= Decimal("100.00"))
                .order_by(Invoice.id)
                .limit(1)
            )
        ).one()
        admin_id = (
            await conn.execute(select(User.id).where(User.role == Role.ADMIN).limit(1))
        ).scalar_one()
    user_id, customer_id, invoice_id = row
    return Viewer(user_id, Role.CUSTOMER, customer_id), invoice_id, admin_id


async def committed_at(db: Database, moment: datetime, action: Awaitable[T]) -> T:
    """Runs `action` as if it had committed at `moment`: the events it wrote move there,
    keeping their order. (An event's time is the system clock's at its commit.)"""
    async with db.connect() as conn:
        before = set((await conn.execute(select(outbox.c.id))).scalars())
    result = await action
    async with db.transaction() as session:
        rows = (
            await session.execute(
                select(outbox.c.id, outbox.c.occurred_at).order_by(
                    outbox.c.occurred_at, outbox.c.id
                )
            )
        ).all()
        written = [(event_id, at) for event_id, at in rows if event_id not in before]
        assert written, "the action wrote no event"
        first = written[0][1]
        for event_id, at in written:
            await session.execute(
                update(outbox)
                .where(outbox.c.id == event_id)
                .values(occurred_at=moment + (at - first))
            )
    return result


async def relay_twice_and_consume(
    db: Database, bus: MemoryBus, settings: Settings, *, events: int
) -> None:
    """Relays the unpublished events to `bus`, then again, as after a relay that died between
    send and mark (the same events with the same ids), and runs the analytics consumer until
    it has handled `events` events and seen each again as a duplicate."""
    catalog = event_catalog(settings)
    async with db.connect() as conn:
        pending = list(
            await conn.scalars(select(outbox.c.id).where(outbox.c.published_at.is_(None)))
        )
    relay = OutboxRelay(db, bus, catalog=catalog)
    try:
        while await relay.run_once():
            pass
        async with db.transaction() as session:
            await session.execute(
                update(outbox).where(outbox.c.id.in_(pending)).values(published_at=None)
            )
        while await relay.run_once():
            pass
    finally:
        await relay.close()
    registry = CollectorRegistry()
    consumer = EventConsumer(
        CONSUMER_NAME,
        db,
        bus,
        [catalog.topics["billing"]],
        HANDLERS,
        dead_letter_suffix=settings.kafka_dead_letter_suffix,
        max_attempts=settings.consumer_max_attempts,
        backoff=timedelta(milliseconds=10),
        metrics=PrometheusConsumerMetrics(registry),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))

    def seen(outcome: str) -> float:
        labels = {"consumer": "analytics", "outcome": outcome}
        return registry.get_sample_value("kabinet_consumer_events_total", labels) or 0.0

    try:
        async with asyncio.timeout(DEADLINE):
            while seen("handled") < events or seen("duplicate") < events:
                assert not task.done(), task
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task
    assert (seen("handled"), seen("duplicate")) == (events, events)


async def test_payments_reach_the_staff_statistics(
    demo_url: str, signing_key: bytes, client: httpx.AsyncClient
) -> None:
    settings: Settings = make_settings(demo_url, signing_key)
    db = Database(demo_url)
    bus = MemoryBus()
    try:
        customer, invoice_id, admin_id = await payer(db)
        # The first payment a second before a UTC midnight; the second, and a refund of
        # the first, just after it.
        paid = []
        for amount, moment in (("30.00", MIDNIGHT - SECOND), ("12.50", MIDNIGHT + SECOND)):
            payment = pay_invoice(
                db,
                customer,
                invoice_id=invoice_id,
                method=PaymentMethod.BALANCE,
                amount=Decimal(amount),
                idempotency_key=str(uuid.uuid4()),
            )
            paid.append(await committed_at(db, moment, payment))
        refund = refund_payment(
            db,
            Viewer(admin_id, Role.ADMIN),
            payment_id=paid[0].payment_id,
            amount=Decimal("5.25"),
            reason="goodwill",
            idempotency_key=str(uuid.uuid4()),
        )
        await committed_at(db, MIDNIGHT + 2 * SECOND, refund)

        await relay_twice_and_consume(db, bus, settings, events=3)
    finally:
        await bus.stop()
        await db.dispose()

    staff = await login(client, "operator@example.com")
    body = await graphql(client, STATISTICS, {"from": "2026-03-01", "to": "2026-03-02"}, staff)
    assert "errors" not in body, body
    statistics = body["data"]["paymentStatistics"]
    # The refund counts on its own day, under the method of the payment it gives back.
    assert statistics["days"] == [
        {
            "day": "2026-03-01",
            "method": "BALANCE",
            "payments": 1,
            "amount": {"amount": "30.00", "currency": "RUB"},
            "refunds": 0,
            "refunded": {"amount": "0.00", "currency": "RUB"},
            "revenue": {"amount": "30.00", "currency": "RUB"},
        },
        {
            "day": "2026-03-02",
            "method": "BALANCE",
            "payments": 1,
            "amount": {"amount": "12.50", "currency": "RUB"},
            "refunds": 1,
            "refunded": {"amount": "5.25", "currency": "RUB"},
            "revenue": {"amount": "7.25", "currency": "RUB"},
        },
    ]
    assert statistics["totals"] == [
        {
            "payments": 2,
            "amount": {"amount": "42.50", "currency": "RUB"},
            "refunds": 1,
            "refunded": {"amount": "5.25"},
            "revenue": {"amount": "37.25"},
        }
    ]


async def test_customers_may_not_read_statistics(client: httpx.AsyncClient) -> None:
    token = await login(client, "alice@example.com")
    for query in (STATISTICS, INVOICE_STATISTICS):
        body = await graphql(client, query, {"from": "2026-01-01", "to": "2026-01-31"}, token)
        assert "data" not in body, "refused before execution"
        assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]


async def test_a_range_over_a_year_or_backwards_is_refused(client: httpx.AsyncClient) -> None:
    staff = await login(client, "operator@example.com")
    for start, end in (("2025-01-01", "2026-01-02"), ("2026-02-01", "2026-01-01")):
        body = await graphql(client, STATISTICS, {"from": start, "to": end}, staff)
        assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"], body
    body = await graphql(client, STATISTICS, {"from": "2024-01-01", "to": "2024-12-31"}, staff)
    assert "errors" not in body, body
    assert body["data"]["paymentStatistics"]["days"] == []
    for start, end in (("2025-01-01", "2026-01-02"), ("2026-02-01", "2026-01-01")):
        body = await graphql(client, INVOICE_STATISTICS, {"from": start, "to": end}, staff)
        assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"], body


def payment_event(time: datetime, amount: str, invoice_id: int | None) -> CloudEvent:
    data = {
        "version": 1,
        "payment_id": 1,
        "invoice_id": invoice_id,
        "customer_id": 1,
        "amount": amount,
        "currency": "RUB",
        "method": "card",
        "status": "succeeded",
    }
    return CloudEvent(uuid.uuid4(), "payment.created", "urn:test", "customer:1", time, data)


async def test_counters_add_up_by_utc_day_on_sqlite(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    late_evening_moscow = datetime(2026, 3, 2, 1, 30, tzinfo=timezone(timedelta(hours=3)))
    try:
        for event in (
            payment_event(late_evening_moscow, "10.10", invoice_id=7),
            payment_event(datetime(2026, 3, 1, 12, 0, tzinfo=UTC), "0.20", invoice_id=8),
            payment_event(datetime(2026, 3, 1, 13, 0, tzinfo=UTC), "99.00", invoice_id=None),
        ):
            async with db.transaction() as session:
                await on_payment_created(session, event)
        statistics = await payment_statistics(db, date(2026, 3, 1), date(2026, 3, 2))
    finally:
        await db.dispose()
    # 01:30 in Moscow is the evening before in UTC; the top-up is not an invoice payment.
    [day] = statistics.days
    assert (day.day, day.method, day.payments, day.amount) == (
        date(2026, 3, 1),
        "card",
        2,
        Decimal("10.30"),
    )
    [total] = statistics.totals
    assert (total.currency, total.revenue) == ("RUB", Decimal("10.30"))


async def test_issued_invoices_count_on_the_utc_day_of_their_issue(
    db: Database, db_url: str, signing_key: bytes
) -> None:
    price, extra = await make_tariff(db, "590.00"), await make_tariff(db, "100.00")
    # 2026-01-17 21:30 UTC is the 18th in Moscow: 14 of 31 days of 100.00 is 45.16.
    joined = datetime(2026, 1, 17, 21, 30, tzinfo=UTC)
    await make_customer(db, [(price, LONG_AGO, None, ACTIVE), (extra, joined, None, ACTIVE)])
    await make_customer(db, [(price, LONG_AGO, None, ACTIVE)])
    # January's run fires at 03:00 on February 1st in Moscow, 00:00 UTC; February's a
    # little after midnight in Moscow, still February 28th in UTC.
    for period, fired in (
        (Period(date(2026, 1, 1)), datetime(2026, 2, 1, 0, 0, tzinfo=UTC)),
        (Period(date(2026, 2, 1)), datetime(2026, 2, 28, 22, 0, tzinfo=UTC)),
    ):
        await run_invoices(
            db,
            period,
            zone=MOSCOW,
            due_days=10,
            autopay=AutopayMode.FULL,
            clock=ManualClock(fired),
        )
    bus = MemoryBus()
    try:
        await relay_twice_and_consume(db, bus, make_settings(db_url, signing_key), events=4)
    finally:
        await bus.stop()

    statistics = await invoice_statistics(db, date(2026, 2, 1), date(2026, 2, 28))
    assert [(day.day, day.currency, day.invoices, day.billed) for day in statistics.days] == [
        (date(2026, 2, 1), "RUB", 2, Decimal("1225.16")),  # 635.16 + 590.00
        (date(2026, 2, 28), "RUB", 2, Decimal("1280.00")),  # 690.00 + 590.00
    ]
    assert [(t.currency, t.invoices, t.billed) for t in statistics.totals] == [
        ("RUB", 4, Decimal("2505.16"))
    ]
    # The range is inclusive at both ends, and a day outside it is not summed.
    later = await invoice_statistics(db, date(2026, 2, 2), date(2026, 2, 28))
    assert [(t.invoices, t.billed) for t in later.totals] == [(2, Decimal("1280.00"))]
