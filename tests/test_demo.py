"""Demo and bulk loaders: load once, balanced ledger, no overpayment, Decimal money."""

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domains.base import MoneyNumeric
from domains.billing.invoice_run import invoice_number
from domains.billing.models import (
    BillingRun,
    BillingRunState,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceStatus,
    Payment,
    PaymentStatus,
    Refund,
    Transaction,
)
from domains.billing.proration import Period
from domains.billing.reconcile import reconcile
from domains.customers.models import Contract, Customer, Subscription, Tariff
from domains.database import Database
from domains.identity.models import User
from domains.identity.passwords import verify_password
from domains.models import metadata
from domains.outbox import OutboxEvent
from domains.support.models import SupportOperator, Ticket, TicketMessage
from gateway.demo import DEMO_LOGINS, DEMO_MONTHS, DEMO_PASSWORD, load_bulk, load_demo
from migrations import upgrade
from tests.conftest import scratch_database

users = User.__table__
customers = Customer.__table__
tariffs = Tariff.__table__
contracts = Contract.__table__
subscriptions = Subscription.__table__
invoices = Invoice.__table__
invoice_lines = InvoiceLine.__table__
billing_runs = BillingRun.__table__
refunds = Refund.__table__
outbox = OutboxEvent.__table__
MOSCOW = ZoneInfo("Europe/Moscow")
payments = Payment.__table__
transactions = Transaction.__table__


async def _fresh_database(url: str) -> Database:
    """Migrated, as `kabinet migrate` leaves it: with the rows migrations seed (support's
    priority rules and SLA policies)."""
    upgrade(url)
    return Database(url)


async def _sqlite_database(path: Path) -> Database:
    return await _fresh_database(f"sqlite+aiosqlite:///{path}")


async def _row_counts(db: Database) -> dict[str, int]:
    async with db.connect() as conn:
        return {
            table.name: (await conn.scalar(select(func.count()).select_from(table))) or 0
            for table in metadata.sorted_tables
        }


async def _link_problems(conn: AsyncConnection) -> list[str]:
    """Children must belong to the same customer (and tariff) as their parents."""
    mismatched_payments = await conn.scalar(
        select(func.count())
        .select_from(payments.join(invoices, payments.c.invoice_id == invoices.c.id))
        .where(payments.c.customer_id != invoices.c.customer_id)
    )
    # The demo's subscriptions bill whole months: each line is its tariff's monthly price.
    mismatched_invoices = await conn.scalar(
        select(func.count())
        .select_from(
            invoice_lines.join(invoices, invoice_lines.c.invoice_id == invoices.c.id)
            .join(subscriptions, invoice_lines.c.subscription_id == subscriptions.c.id)
            .join(tariffs, subscriptions.c.tariff_id == tariffs.c.id)
        )
        .where(
            (invoices.c.customer_id != subscriptions.c.customer_id)
            | (invoice_lines.c.tariff_id != tariffs.c.id)
            | (invoice_lines.c.amount != tariffs.c.monthly_price)
        )
    )
    mismatched_subscriptions = await conn.scalar(
        select(func.count())
        .select_from(subscriptions.join(contracts, subscriptions.c.contract_id == contracts.c.id))
        .where(
            (subscriptions.c.customer_id != contracts.c.customer_id)
            | (subscriptions.c.tariff_id != contracts.c.tariff_id)
        )
    )
    counts = {
        "payments": mismatched_payments,
        "invoices": mismatched_invoices,
        "subscriptions": mismatched_subscriptions,
    }
    return [f"{count} {name} mismatch their parent" for name, count in counts.items() if count]


@pytest_asyncio.fixture(scope="module")
async def demo_db(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Database]:
    """One demo load shared by the read-only tests."""
    db = await _sqlite_database(tmp_path_factory.mktemp("demo") / "kabinet.db")
    assert await load_demo(db)
    yield db
    await db.dispose()


async def test_demo_loads_once(tmp_path: Path) -> None:
    db = await _sqlite_database(tmp_path / "kabinet.db")
    calls: list[tuple[int, int]] = []
    try:
        assert await load_demo(db, progress=lambda done, total: calls.append((done, total)))
        counts = await _row_counts(db)
        assert await load_demo(db) is False
        assert await _row_counts(db) == counts
    finally:
        await db.dispose()
    assert calls[0] == (0, 50)
    assert calls[-1] == (50, 50)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert counts["customers"] == 50
    assert counts["users"] == 50 + 3  # and the staff: an admin and two operators
    assert 3 <= counts["tariffs"] <= 5
    # The run bills each customer once a month, a line per subscription, for 12 months.
    assert counts["invoices"] == 50 * DEMO_MONTHS
    assert counts["invoice_lines"] == counts["subscriptions"] * DEMO_MONTHS
    assert counts["billing_runs"] == DEMO_MONTHS


async def test_demo_support_desk_shows_each_state(demo_db: Database) -> None:
    """The operators' load matches their tickets, one ticket waits in the queue, and each
    state of a ticket's life is there to look at."""
    async with demo_db.connect() as conn:
        tickets = (
            await conn.execute(
                select(Ticket.category, Ticket.priority, Ticket.status, Ticket.assignee_id)
            )
        ).all()
        operators = dict(
            (
                await conn.execute(select(SupportOperator.user_id, SupportOperator.open_tickets))
            ).all()
        )
        notes = await conn.scalar(
            select(func.count()).select_from(TicketMessage).where(TicketMessage.internal)
        )
    assert {status for _, _, status, _ in tickets} == {
        "new",
        "pending_customer",
        "resolved",
        "closed",
    }
    held = {"new", "open", "pending_customer"}
    for user_id, open_tickets in operators.items():
        assert open_tickets == sum(
            1 for _, _, status, assignee in tickets if assignee == user_id and status in held
        )
    assert [category for category, _, _, assignee in tickets if assignee is None] == ["moving"]
    # alice's connection ticket, the day after her billing one: raised to urgent.
    assert ("no_connection", "urgent") in [(c, p) for c, p, _, _ in tickets]
    assert notes == 1


async def test_interrupted_demo_leaves_nothing_and_loads_again(tmp_path: Path) -> None:
    def interrupt(done: int, _total: int) -> None:
        if done >= 20:
            raise KeyboardInterrupt

    db = await _sqlite_database(tmp_path / "kabinet.db")
    try:
        migrated = await _row_counts(db)
        with pytest.raises(KeyboardInterrupt):
            await load_demo(db, progress=interrupt)
        assert await _row_counts(db) == migrated
        assert await load_demo(db)
    finally:
        await db.dispose()


async def test_demo_logins_have_their_roles_and_password(demo_db: Database) -> None:
    async with demo_db.connect() as conn:
        rows = (
            await conn.execute(
                select(users.c.email, users.c.role, users.c.is_active, users.c.password_hash).where(
                    users.c.email.in_(DEMO_LOGINS)
                )
            )
        ).all()
    assert {email: role for email, role, _, _ in rows} == DEMO_LOGINS
    assert all(active for _, _, active, _ in rows)
    assert all(verify_password(password_hash, DEMO_PASSWORD) for *_, password_hash in rows)


async def test_demo_billing_is_consistent(demo_db: Database) -> None:
    assert await reconcile(demo_db) == []  # every ledger invariant holds
    async with demo_db.connect() as conn:
        assert await _link_problems(conn) == []
        statuses = set(await conn.scalars(select(invoices.c.status).distinct()))
        partly_paid = await conn.scalar(
            select(func.count(func.distinct(payments.c.invoice_id)))
            .select_from(payments.join(invoices, payments.c.invoice_id == invoices.c.id))
            .where(
                payments.c.status == PaymentStatus.SUCCEEDED,
                invoices.c.status == InvoiceStatus.OVERDUE,
            )
        )
        inactive_tariffs = await conn.scalar(
            select(func.count()).select_from(tariffs).where(tariffs.c.is_active.is_(False))
        )
    assert statuses == {InvoiceStatus.PAID, InvoiceStatus.ISSUED, InvoiceStatus.OVERDUE}
    assert partly_paid
    assert inactive_tariffs == 1


async def test_demo_invoices_are_the_runs(demo_db: Database) -> None:
    """Each month was billed by run_invoices on its 1st, 03:00 in Moscow, and settled by the
    payment actions: their events are in the outbox as the API's would be."""
    async with demo_db.connect() as conn:
        billed = (
            await conn.execute(
                select(
                    invoices.c.kind,
                    invoices.c.number,
                    invoices.c.customer_id,
                    invoices.c.period_start,
                    invoices.c.issued_at,
                    invoices.c.due_date,
                )
            )
        ).all()
        events = dict(
            (await conn.execute(select(outbox.c.type, func.count()).group_by(outbox.c.type))).all()
        )
        runs = set(await conn.scalars(select(billing_runs.c.state)))
        refunded = await conn.scalar(select(func.count()).select_from(refunds))
    this_month = max(period_start for *_, period_start, _, _ in billed)
    for kind, number, customer_id, period_start, issued_at, due_date in billed:
        assert kind is InvoiceKind.MONTHLY
        assert number == invoice_number(customer_id, Period(period_start))
        fired = datetime.combine(period_start, time(3), MOSCOW)
        if issued_at < fired:  # a demo loaded before this month's run time is billed then
            assert period_start == this_month
            continue
        assert issued_at == fired
        assert due_date == period_start + timedelta(days=10)
    assert runs == {BillingRunState.FINISHED}
    assert events["invoice.issued"] == len(billed)
    # A balance change is a payment's, the refund's or the one promised payment's credit.
    assert events["promised_payment.activated"] == 1
    assert events["payment.created"] == (events["balance.changed"] - events["payment.refunded"] - 1)
    assert events["invoice.paid"] > 0
    assert (events["payment.refunded"], refunded) == (1, 1)


async def _customer_invoices(conn: AsyncConnection, email: str) -> tuple[Decimal, list]:
    balance = await conn.scalar(
        select(customers.c.balance)
        .select_from(customers.join(users, customers.c.user_id == users.c.id))
        .where(users.c.email == email)
    )
    rows = (
        await conn.execute(
            select(invoices.c.status, invoices.c.period_start)
            .select_from(
                invoices.join(customers, invoices.c.customer_id == customers.c.id).join(
                    users, customers.c.user_id == users.c.id
                )
            )
            .where(users.c.email == email)
        )
    ).all()
    return balance, rows


async def test_alice_is_overdue_with_a_balance_and_bob_has_paid_everything(
    demo_db: Database,
) -> None:
    async with demo_db.connect() as conn:
        alice_balance, alice_invoices = await _customer_invoices(conn, "alice@example.com")
        bob_balance, bob_invoices = await _customer_invoices(conn, "bob@example.com")
    # README's walk-through: alice owes last month and this one, with 420.00 to pay from.
    assert alice_balance == Decimal("420.00")
    assert [status for status, _ in sorted(alice_invoices, key=lambda row: row[1])][-2:] == [
        InvoiceStatus.OVERDUE,
        InvoiceStatus.ISSUED,
    ]
    assert len(bob_invoices) == DEMO_MONTHS
    assert {status for status, _ in bob_invoices} == {InvoiceStatus.PAID}
    assert bob_balance >= 0


async def test_money_columns_read_back_as_decimal(demo_db: Database) -> None:
    money_columns = [
        column
        for table in metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type, MoneyNumeric)
    ]
    assert len(money_columns) >= 5
    async with demo_db.connect() as conn:
        for column in money_columns:
            values = list(await conn.scalars(select(column).where(column.is_not(None))))
            assert values, f"{column} is never filled"
            assert all(type(value) is Decimal for value in values), column


async def _fingerprint(db: Database) -> list[tuple]:
    """The loaded content without the clock: the same seed must give the same rows."""
    async with db.connect() as conn:
        people = await conn.execute(
            select(users.c.email, customers.c.contract_num, customers.c.full_name)
            .select_from(customers.join(users, customers.c.user_id == users.c.id))
            .order_by(customers.c.id)
        )
        bills = await conn.execute(
            select(invoices.c.number, invoices.c.amount, invoices.c.status).order_by(invoices.c.id)
        )
        return [*people, *bills]


async def test_same_seed_gives_the_same_data(tmp_path: Path) -> None:
    first = await _sqlite_database(tmp_path / "first.db")
    second = await _sqlite_database(tmp_path / "second.db")
    other = await _sqlite_database(tmp_path / "other.db")
    try:
        for db, seed in ((first, 7), (second, 7), (other, 8)):
            assert await load_demo(db, customers=10, seed=seed)
        assert await _fingerprint(first) == await _fingerprint(second)
        assert await _fingerprint(first) != await _fingerprint(other)
    finally:
        for db in (first, second, other):
            await db.dispose()


@pytest_asyncio.fixture
async def pg_db() -> AsyncIterator[Database]:
    """A scratch PostgreSQL database of this test's own, dropped afterwards."""
    async with scratch_database("kabinet_demo") as url:
        db = await _fresh_database(url)
        yield db
        await db.dispose()


@pytest.mark.postgres
async def test_load_bulk_beside_the_demo_on_postgres(pg_db: Database) -> None:
    calls: list[tuple[int, int]] = []
    assert await load_demo(pg_db, customers=5)
    await load_bulk(
        pg_db,
        customers=30,
        invoices_per_customer=3,
        seed=7,
        progress=lambda done, total: calls.append((done, total)),
    )
    async with pg_db.connect() as conn:
        bulk_users = await conn.scalar(
            select(func.count()).select_from(users).where(users.c.email.like("%@bulk7.example.com"))
        )
        bulk_invoices = await conn.scalar(
            select(func.count()).select_from(invoices).where(invoices.c.number.like("INV-B7-%"))
        )
        assert await _link_problems(conn) == []
    assert await reconcile(pg_db) == []
    assert (bulk_users, bulk_invoices) == (30, 90)
    assert calls == [(0, 30), (30, 30)]


@pytest.mark.postgres
async def test_concurrent_demo_loads_on_postgres_load_once(pg_db: Database) -> None:
    results = await asyncio.gather(load_demo(pg_db, customers=5), load_demo(pg_db, customers=5))
    assert sorted(results) == [False, True]
    assert (await _row_counts(pg_db))["customers"] == 5
