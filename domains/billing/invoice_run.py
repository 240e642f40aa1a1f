"""The monthly invoice run: bills one period, a batch of customers per transaction.

Each batch commits on its own: the customers' `monthly` invoices, issued with their due
date, their lines, the receivables they post (`post_issuance`), one `invoice.issued` event
each, and the run's counts. A run killed at any point loses at most the batch it was
writing, which rolls back whole; started again, it reads only what is still unbilled
(domains/billing/billable.py), so every invoice is made exactly once. The unique indexes
hold that even against a second writer: an invoice is unique per (customer, period) for
`monthly` ones and a line per (subscription, period), and ON CONFLICT DO NOTHING skips what
exists. An invoice number is `M<YYYYMM>-<customer id>`: the same whichever run makes it.

The batch also pays its new invoices from the balance, as `KABINET_BILLING_AUTOPAY` says
(domains/billing/autopay.py), so an invoice and its payment commit together.

One runner at a time: on PostgreSQL a session advisory lock, held for the whole run, makes a
second runner wait for the first to end; SQLite has a single writer. A run started while its
period's record is still `running` (its runner was killed, as the lock says) carries that
record on; otherwise it opens a new one.
"""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Literal, overload
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from domains.billing.autopay import AutopayMode, pay_from_balance
from domains.billing.billable import Batch, Bill, Item, billable_batch
from domains.billing.errors import BillingRunConflict
from domains.billing.events import invoice_issued
from domains.billing.invoice_issue import IssuedInvoice, post_issuance
from domains.billing.models import (
    BillingRun,
    BillingRunState,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceStatus,
)
from domains.billing.proration import Period
from domains.clock import SYSTEM_CLOCK, Clock
from domains.database import Database, conflict_insert

invoices = Invoice.__table__
lines = InvoiceLine.__table__
runs = BillingRun.__table__

# pg_advisory_lock's key for the invoice run ("kabinet.billing_run" in ASCII, 8 bytes' worth).
RUN_LOCK = 0x6B62696C6C72756E
BATCH_SIZE = 1000


@dataclass(frozen=True, slots=True)
class RunProgress:
    """After each committed batch: what this run has read and billed so far."""

    run_id: int
    customers: int
    invoices: int
    lines: int
    amount: Decimal
    # Invoices paid from the balance (autopay), in full or in part.
    autopaid: int = 0


def invoice_number(customer_id: int, period: Period) -> str:
    return f"M{period.start:%Y%m}-{customer_id}"


@overload
async def run_invoices(
    db: Database,
    period: Period,
    *,
    zone: ZoneInfo,
    due_days: int,
    autopay: AutopayMode,
    clock: Clock = ...,
    batch_size: int = ...,
    progress: Callable[[RunProgress], None] | None = ...,
    if_unfinished: Literal[False] = ...,
) -> RunProgress: ...


@overload
async def run_invoices(
    db: Database,
    period: Period,
    *,
    zone: ZoneInfo,
    due_days: int,
    autopay: AutopayMode,
    clock: Clock = ...,
    batch_size: int = ...,
    progress: Callable[[RunProgress], None] | None = ...,
    if_unfinished: bool,
) -> RunProgress | None: ...


async def run_invoices(
    db: Database,
    period: Period,
    *,
    zone: ZoneInfo,
    due_days: int,
    autopay: AutopayMode,
    clock: Clock = SYSTEM_CLOCK,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[RunProgress], None] | None = None,
    if_unfinished: bool = False,
) -> RunProgress | None:
    """Bills every customer not yet billed for `period`; the run's record says what it did.
    `progress` is told after each batch commits (an error it raises stops the run there).
    `if_unfinished` (the worker's schedule) bills nothing, and answers None, when a run of
    the period has finished: checked under the runners' lock, so a second worker that
    waited for the first sees its record."""
    if due_days < 0:
        raise ValueError(f"due days are not negative, not {due_days}")
    async with _one_runner(db):
        if if_unfinished and await _finished(db, period):
            return None
        run_id = await _open_run(db, period, clock.now())
        done = RunProgress(run_id, 0, 0, 0, Decimal("0.00"))
        try:
            after = 0
            after_first_invoices = False
            while True:
                async with db.transaction() as session:
                    batch = await billable_batch(
                        session, period, zone, after=after, size=batch_size
                    )
                    if batch is None:
                        break
                    done = await _bill(
                        session, done, period, batch, clock.now(), zone, due_days, autopay
                    )
                if done.invoices and not after_first_invoices:
                    await _analyze_what_grows(db)
                    after_first_invoices = True
                after = batch.last_customer_id
                if progress is not None:
                    progress(done)
        except Exception:
            await _close_run(db, run_id, BillingRunState.FAILED, clock.now())
            raise
        await _close_run(db, run_id, BillingRunState.FINISHED, clock.now())
        return done


@asynccontextmanager
async def _one_runner(db: Database) -> AsyncIterator[None]:
    if db.is_sqlite:
        yield
        return
    async with db.connect() as conn:
        await conn.execute(select(func.pg_advisory_lock(RUN_LOCK)))
        try:
            yield
        finally:
            await conn.execute(select(func.pg_advisory_unlock(RUN_LOCK)))


async def _analyze_what_grows(db: Database) -> None:
    """Refreshes PostgreSQL's statistics of the tables each batch reads back and grows.

    Each batch looks up the period's invoices and lines (domains/billing/billable.py).
    Statistics taken while they were empty, as before a first run, say they stay so; the
    planner then scans them whole for every subscription of every batch, and a run grows
    quadratic. Statistics taken with rows in them are scaled by the tables' size as they
    grow, so once, after the run's first invoices, is enough; it samples a bounded number
    of rows, whatever the tables' size."""
    if db.is_sqlite:
        return
    async with db.connect() as conn:
        await conn.execute(text("ANALYZE invoices, invoice_lines"))


async def _finished(db: Database, period: Period) -> bool:
    async with db.connect() as conn:
        found = await conn.execute(
            select(runs.c.id)
            .where(
                runs.c.period_start == period.start,
                runs.c.state == BillingRunState.FINISHED,
            )
            .limit(1)
        )
        return found.first() is not None


async def _open_run(db: Database, period: Period, now: datetime) -> int:
    async with db.transaction() as session:
        left = await session.execute(
            select(runs.c.id)
            .where(
                runs.c.period_start == period.start,
                runs.c.state == BillingRunState.RUNNING,
            )
            .order_by(runs.c.id.desc())
            .limit(1)
        )
        if (run_id := left.scalar()) is not None:
            return run_id
        opened = await session.execute(
            insert(runs)
            .values(
                period_start=period.start,
                period_end=period.end,
                state=BillingRunState.RUNNING,
                started_at=now,
                invoices=0,
                lines=0,
                amount=Decimal("0.00"),
                autopaid=0,
            )
            .returning(runs.c.id)
        )
        return opened.scalar_one()


async def _close_run(db: Database, run_id: int, state: BillingRunState, now: datetime) -> None:
    async with db.transaction() as session:
        await session.execute(
            update(runs).where(runs.c.id == run_id).values(state=state, finished_at=now)
        )


async def _bill(
    session: AsyncSession,
    done: RunProgress,
    period: Period,
    batch: Batch,
    now: datetime,
    zone: ZoneInfo,
    due_days: int,
    autopay: AutopayMode,
) -> RunProgress:
    """Writes the batch's invoices, lines, receivables, events, payments from the balance
    and the run's counts. Rows go as executemany, which SQLAlchemy sends as multi-row
    INSERTs of a bounded size (with RETURNING), so a customer with thousands of
    subscriptions stays within the drivers' limit on parameters per statement."""
    if not batch.bills:
        return _grown(done, batch.customers, [])
    due = now.astimezone(zone).date() + timedelta(days=due_days)
    made = await session.execute(
        conflict_insert(session, invoices)
        .on_conflict_do_nothing(
            index_elements=["customer_id", "period_start"], index_where=text("kind = 'monthly'")
        )
        .returning(invoices.c.id, invoices.c.customer_id),
        [_invoice(bill, period, now, due) for bill in batch.bills],
    )
    ids = {customer_id: invoice_id for invoice_id, customer_id in made.all()}
    issued = [bill for bill in batch.bills if bill.customer_id in ids]
    if not issued:
        return _grown(done, batch.customers, [])
    expected = [_line(ids[bill.customer_id], bill, item) for bill in issued for item in bill.items]
    written = await session.execute(
        conflict_insert(session, lines)
        .on_conflict_do_nothing(index_elements=["subscription_id", "period_start"])
        .returning(lines.c.id),
        expected,
    )
    if len(written.all()) != len(expected):
        # Someone billed one of these subscriptions since the batch was read: this batch's
        # totals would not be its lines. Roll it back; a new run reads what is left.
        raise BillingRunConflict("a subscription of this batch was billed meanwhile")
    issuance = [
        IssuedInvoice(ids[b.customer_id], b.customer_id, b.amount, b.currency, now) for b in issued
    ]
    await post_issuance(session, issuance)
    for bill in issued:
        await _announce(session, ids[bill.customer_id], bill, period, due)
    autopaid = await pay_from_balance(session, issuance, autopay, now)
    grown = _grown(done, batch.customers, issued, autopaid)
    await session.execute(
        update(runs)
        .where(runs.c.id == done.run_id)
        .values(
            invoices=runs.c.invoices + (grown.invoices - done.invoices),
            lines=runs.c.lines + (grown.lines - done.lines),
            amount=runs.c.amount + (grown.amount - done.amount),
            autopaid=runs.c.autopaid + autopaid,
        )
    )
    return grown


def _invoice(bill: Bill, period: Period, now: datetime, due: date) -> dict:
    return {
        "customer_id": bill.customer_id,
        "kind": InvoiceKind.MONTHLY,
        "number": invoice_number(bill.customer_id, period),
        "period_start": period.start,
        "period_end": period.end,
        "amount": bill.amount,
        "currency": bill.currency,
        "status": InvoiceStatus.ISSUED,
        "issued_at": now,
        "due_date": due,
        "created_at": now,
    }


def _line(invoice_id: int, bill: Bill, item: Item) -> dict:
    charge = item.charge
    return {
        "invoice_id": invoice_id,
        "subscription_id": item.subscription_id,
        "tariff_id": item.tariff_id,
        "period_start": charge.period.start,
        "period_end": charge.period.end,
        "first_day": charge.first_day,
        "last_day": charge.last_day,
        "days": charge.days,
        "unit_price": charge.unit_price,
        "amount": charge.amount,
        "currency": bill.currency,
        "description": item.description,
    }


async def _announce(
    session: AsyncSession, invoice_id: int, bill: Bill, period: Period, due: date
) -> None:
    await invoice_issued(
        session,
        invoice_id=invoice_id,
        customer_id=bill.customer_id,
        number=invoice_number(bill.customer_id, period),
        period_start=period.start,
        period_end=period.end,
        amount=bill.amount,
        currency=bill.currency,
        due_date=due,
        lines=[
            {
                "subscription_id": item.subscription_id,
                "tariff_id": item.tariff_id,
                "days": item.charge.days,
                "amount": str(item.charge.amount),
                "description": item.description,
            }
            for item in bill.items
        ],
    )


def _grown(done: RunProgress, customers: int, issued: list[Bill], autopaid: int = 0) -> RunProgress:
    return RunProgress(
        run_id=done.run_id,
        customers=done.customers + customers,
        invoices=done.invoices + len(issued),
        lines=done.lines + sum(len(bill.items) for bill in issued),
        amount=done.amount + sum((bill.amount for bill in issued), Decimal("0.00")),
        autopaid=done.autopaid + autopaid,
    )
