"""Overdue invoices (issue 13, point 6): marked once, in the billing time zone's calendar,
never when paid, without waiting on a payer's locks; `invoiceUpdated` streams the change.

Each test owns its database (SQLite and PostgreSQL), so reconcile over the whole of it
must hold after every scenario.
"""

import asyncio
import sys
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from sqlalchemy import select, update

from domains.billing.invoice_overdue import mark_overdue_invoices
from domains.billing.models import Invoice, InvoiceStatus
from domains.billing.reconcile import reconcile
from domains.billing.refund_payment import refund_payment
from domains.billing.settlement import lock_customer, lock_invoice
from domains.clock import ManualClock
from domains.database import Database
from domains.outbox import OutboxEvent
from tests.conftest import migrated_database
from tests.test_invoice_run import command, kabinet
from tests.test_payments import invoice_status, make_admin, make_customer, pay
from tests.test_subscriptions import (
    _by_operation,
    _embedded,
    _embedded_relay,
    _graphql,
    _serving,
    _subscribed,
    _token,
    _wait_subscribers,
)

MOSCOW = ZoneInfo("Europe/Moscow")
DUE = date(2026, 2, 11)
# 23:59:59 on the due date in Moscow, then its next day's first second (UTC+3).
LAST_SECOND_DUE = datetime(2026, 2, 11, 20, 59, 59, tzinfo=UTC)
FIRST_SECOND_AFTER = datetime(2026, 2, 11, 21, 0, 0, tzinfo=UTC)


@pytest_asyncio.fixture
async def pg_db() -> AsyncIterator[Database]:
    async with migrated_database("kabinet_overdue") as url:
        database = Database(url)
        yield database
        await database.dispose()


async def due_on(db: Database, invoice_ids: list[int], due: date) -> None:
    async with db.transaction() as tx:
        await tx.execute(update(Invoice).where(Invoice.id.in_(invoice_ids)).values(due_date=due))


async def overdue_events(db: Database) -> list[dict]:
    async with db.connect() as conn:
        stmt = (
            select(OutboxEvent.subject, OutboxEvent.payload)
            .where(OutboxEvent.type == "invoice.overdue")
            .order_by(OutboxEvent.occurred_at)
        )
        return [{"subject": row.subject, **row.payload} for row in await conn.execute(stmt)]


async def mark(db: Database, at: datetime, **options: int) -> int:
    return await mark_overdue_invoices(db, zone=MOSCOW, clock=ManualClock(at), **options)


async def assert_reconciled(db: Database) -> None:
    assert [str(problem) for problem in await reconcile(db)] == []


async def test_issued_invoices_are_overdue_from_the_day_after_their_due_date(db: Database):
    viewer, [late, paid, later] = await make_customer(
        db,
        "1000.00",
        [
            ("100.00", InvoiceStatus.ISSUED),
            ("200.00", InvoiceStatus.ISSUED),
            ("300.00", InvoiceStatus.ISSUED),
        ],
    )
    await due_on(db, [late, paid], DUE)
    await due_on(db, [later], date(2026, 2, 12))
    await pay(db, viewer, paid, None, "pay-before-due")

    assert await mark(db, LAST_SECOND_DUE) == 0
    assert await mark(db, FIRST_SECOND_AFTER) == 1

    assert await invoice_status(db, late) is InvoiceStatus.OVERDUE
    assert await invoice_status(db, paid) is InvoiceStatus.PAID
    assert await invoice_status(db, later) is InvoiceStatus.ISSUED
    [event] = await overdue_events(db)
    assert event == {
        "subject": f"customer:{viewer.customer_id}",
        "version": 1,
        "invoice_id": late,
        "customer_id": viewer.customer_id,
        "number": f"P-{viewer.customer_id}-0",
        "amount": "100.00",
        "currency": "RUB",
        "due_date": "2026-02-11",
    }
    await assert_reconciled(db)


async def test_a_second_pass_marks_nothing_and_writes_no_event(db: Database):
    _, invoices = await make_customer(db, "0.00", [("50.00", InvoiceStatus.ISSUED)] * 5)
    await due_on(db, invoices, DUE)

    # Batches of two: three transactions for five invoices, each marked once.
    assert await mark(db, FIRST_SECOND_AFTER, batch_size=2) == 5
    assert await mark(db, FIRST_SECOND_AFTER, batch_size=2) == 0

    assert sorted(event["invoice_id"] for event in await overdue_events(db)) == sorted(invoices)
    assert {await invoice_status(db, invoice) for invoice in invoices} == {InvoiceStatus.OVERDUE}
    await assert_reconciled(db)


async def test_an_overdue_invoice_is_still_paid_and_then_left_alone(db: Database):
    viewer, [invoice] = await make_customer(db, "500.00", [("120.00", InvoiceStatus.ISSUED)])
    await due_on(db, [invoice], DUE)
    assert await mark(db, FIRST_SECOND_AFTER) == 1

    await pay(db, viewer, invoice, None, "pay-late")

    assert await invoice_status(db, invoice) is InvoiceStatus.PAID
    assert await mark(db, FIRST_SECOND_AFTER) == 0
    assert len(await overdue_events(db)) == 1
    await assert_reconciled(db)


async def test_a_refund_reissues_a_past_due_invoice_and_the_marker_makes_it_overdue(
    db: Database,
):
    """A refund leaves a paid invoice ISSUED whatever its due date: whether it is overdue is
    the marker's to say, on the billing zone's day and with its one event."""
    viewer, [invoice] = await make_customer(db, "500.00", [("120.00", InvoiceStatus.ISSUED)])
    await due_on(db, [invoice], DUE)
    paid = await pay(db, viewer, invoice, None, "pay-early")
    await refund_payment(
        db,
        await make_admin(db),
        payment_id=paid.payment_id,
        amount=Decimal("20.00"),
        reason="outage",
        idempotency_key="refund-part",
    )
    assert await invoice_status(db, invoice) is InvoiceStatus.ISSUED

    assert await mark(db, FIRST_SECOND_AFTER) == 1
    assert await invoice_status(db, invoice) is InvoiceStatus.OVERDUE
    assert [event["invoice_id"] for event in await overdue_events(db)] == [invoice]
    await assert_reconciled(db)


async def test_a_batch_holds_at_least_one_invoice(db: Database):
    with pytest.raises(ValueError, match="at least one"):
        await mark(db, FIRST_SECOND_AFTER, batch_size=0)


@pytest.mark.postgres
async def test_marking_passes_an_invoice_a_payer_holds_and_never_waits(pg_db: Database):
    """A payer holds the customer, then the invoice (the documented lock order): the pass
    skips that invoice instead of waiting, marks the rest, and the next pass marks it."""
    viewer, [held, free] = await make_customer(
        pg_db, "0.00", [("10.00", InvoiceStatus.ISSUED), ("20.00", InvoiceStatus.ISSUED)]
    )
    await due_on(pg_db, [held, free], DUE)
    customer_id = viewer.customer_id
    assert customer_id is not None
    async with pg_db.transaction() as payer:
        assert await lock_customer(payer, customer_id) is not None
        assert await lock_invoice(payer, held) is not None
        async with asyncio.timeout(30):  # a guard against a wait, never a measure
            assert await mark(pg_db, FIRST_SECOND_AFTER) == 1

    assert await invoice_status(pg_db, held) is InvoiceStatus.ISSUED
    assert await invoice_status(pg_db, free) is InvoiceStatus.OVERDUE
    assert await mark(pg_db, FIRST_SECOND_AFTER) == 1
    assert await invoice_status(pg_db, held) is InvoiceStatus.OVERDUE
    assert len(await overdue_events(pg_db)) == 2
    await assert_reconciled(pg_db)


async def test_the_cli_marks_overdue_invoices_once_on_sqlite(sqlite_url: str):
    db = Database(sqlite_url)
    try:
        _, invoices = await make_customer(db, "0.00", [("40.00", InvoiceStatus.ISSUED)] * 2)
        await due_on(db, invoices, date(2026, 1, 10))  # long past, by the system's clock

        first = await kabinet(sqlite_url, "billing", "overdue")
        assert first.returncode == 0, first.stderr
        assert "invoices marked overdue: 2" in first.stdout
        again = await kabinet(sqlite_url, "billing", "overdue")
        assert "invoices marked overdue: 0" in again.stdout
        assert len(await overdue_events(db)) == 2
    finally:
        await db.dispose()


async def test_a_bad_run_time_stops_the_cli_with_the_settings_error(sqlite_url: str):
    program = str(Path(sys.executable).parent / "kabinet")
    ran = await command(
        program, "billing", "overdue", KABINET_DATABASE_URL=sqlite_url, KABINET_BILLING_RUN_AT="3am"
    )
    assert ran.returncode == 1
    assert "billing_run_at" in ran.stderr
    assert "a time of day is HH:MM (00:00 to 23:59), not '3am'" in ran.stderr
    assert "Traceback" not in ran.stderr


LIVE_INVOICE = "subscription { invoiceUpdated { eventId invoice { id status } } }"
ISSUED_INVOICES = "{ invoices(status: [ISSUED], first: 50) { edges { node { id } } } }"


async def test_invoice_updated_streams_the_overdue_invoice_to_its_customer(
    sqlite_demo_copy: str, signing_key: bytes
):
    """The whole way: the marking's outbox events, the relay, the bus, the hub, the socket.
    Alice sees each of her issued invoices turn overdue, and nothing of Bob's."""
    with _serving(_embedded(sqlite_demo_copy, signing_key)) as server:
        base, app, wrapped = server
        alice = await _token(base, "alice@example.com")
        edges = (await _graphql(base, alice, ISSUED_INVOICES))["invoices"]["edges"]
        issued = {edge["node"]["id"] for edge in edges}
        assert issued, "the demo gives Alice issued invoices"
        assert wrapped.loop is not None
        async with _embedded_relay(server):
            async for ws in _subscribed(base, alice, LIVE_INVOICE):
                await _wait_subscribers(app, 1)
                # Long after every demo due date; on the app's loop, as the worker runs it.
                marking = mark(app.state.services.db, datetime(2100, 1, 1, tzinfo=UTC))
                marked = asyncio.run_coroutine_threadsafe(marking, wrapped.loop)
                assert await asyncio.wrap_future(marked) >= len(issued)
                got = [(await _by_operation(ws, 1))["1"] for _ in issued]
    seen = {result["invoiceUpdated"]["invoice"]["id"] for result in got}
    assert seen == issued
    assert {result["invoiceUpdated"]["invoice"]["status"] for result in got} == {"OVERDUE"}
