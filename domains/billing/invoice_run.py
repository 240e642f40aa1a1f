"""The monthly invoice run: bills one period, a batch of customers per transaction.

Each batch commits on its own: the customers' `monthly` invoices, issued with their due
date, their lines, the receivables they post (`post_issuance`), one `invoice.issued` event
each, and the run's counts. A run killed at any point loses at most the batch it was
writing, which rolls back whole; started again, it reads only what is still unbilled
(domains/billing/billable.py), so every invoice is made exactly once. The unique indexes
hold that even against a second writer: an invoice is unique per (customer, period) for
`monthly` ones and a line per (subscription, period, first day billed: a line per tariff
span), and ON CONFLICT DO NOTHING skips what exists. An invoice number is
`M<YYYYMM>-<customer id>`: the same whichever run makes it.

At scale (bench/invoice_run.py: a million subscriptions): a batch is a fixed number of
statements, one per table, each column's values one array (RowsInsert), nothing per row but
its values; the run holds two batches at most, whatever the period's size. On PostgreSQL
two are under way at once, each on its own connection, so pricing one here overlaps the
database writing the other; they commit in order.

The batch also pays its new invoices from the balance, as `KABINET_BILLING_AUTOPAY` says
(domains/billing/autopay.py), so an invoice and its payment commit together.

One runner at a time: on PostgreSQL a session advisory lock, held for the whole run, makes a
second runner wait for the first to end; SQLite has a single writer. A run started while its
period's record is still `running` (its runner was killed, as the lock says) carries that
record on; otherwise it opens a new one.
"""

import asyncio
import gc
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Literal, overload
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from domains.billing.autopay import AutopayMode, pay_from_balance
from domains.billing.billable import Bill, Customers, Item, billable_bills, billable_customers
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
from domains.database import Database
from domains.writes import Inserted, RowsInsert, writer

invoices = Invoice.__table__
lines = InvoiceLine.__table__
runs = BillingRun.__table__

# pg_advisory_lock's key for the invoice run ("kabinet.billing_run" in ASCII, 8 bytes' worth).
RUN_LOCK = 0x6B62696C6C72756E
BATCH_SIZE = 4000
# Batches under way at once (PostgreSQL): one written by the database while the next is
# read and priced here.
LANES = 2
# Allocations between the garbage collector's youngest collections while a run bills (700
# by default): a batch's rows, bills and events are tens of thousands of objects that live
# as long as their batch.
RUN_GC_THRESHOLD = 50_000


@dataclass(frozen=True, slots=True)
class _Made:
    """An invoice the batch wrote (one already there for its customer is skipped)."""

    id: int
    customer_id: int


_INVOICES = RowsInsert(
    invoices,
    ("customer_id", "number", "amount", "currency"),
    shared=("kind", "period_start", "period_end", "status", "issued_at", "due_date", "created_at"),
    skip_conflicts=("customer_id", "period_start"),
    skip_where="kind = 'monthly'",
    returning=_Made,
)
_LINES = RowsInsert(
    lines,
    (
        "invoice_id",
        "subscription_id",
        "tariff_id",
        "first_day",
        "last_day",
        "days",
        "unit_price",
        "amount",
        "currency",
        "description",
    ),
    shared=("period_start", "period_end"),
    skip_conflicts=("subscription_id", "period_start", "first_day"),
    returning=Inserted,
)


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
    return f"{_numbered(period.start)}{customer_id}"


@cache
def _numbered(start: date) -> str:
    """A period's invoice numbers' prefix: strftime, once a period, not once an invoice."""
    return f"M{start:%Y%m}-"


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
    job = _Job(period, zone, due_days, autopay, clock, progress)
    async with _one_runner(db):
        if if_unfinished and await _finished(db, period):
            return None
        run_id = await _open_run(db, period, clock.now())
        try:
            with _fewer_collections():
                done = await _bill_batches(
                    db, RunProgress(run_id, 0, 0, 0, Decimal("0.00")), job, batch_size
                )
        except Exception:
            await _close_run(db, run_id, BillingRunState.FAILED, clock.now())
            raise
        await _close_run(db, run_id, BillingRunState.FINISHED, clock.now())
        return done


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Collects garbage every `RUN_GC_THRESHOLD` allocations while the run bills.

    At the default threshold a batch's objects, alive until it commits, survive a dozen
    young collections each and are promoted, and the old generations' collections then walk
    every object of the process (its modules, SQLAlchemy's tables): a quarter of the run's
    CPU at 70,000 customers. Nothing is left uncollected, only collected less often; the
    thresholds are put back afterwards (the worker's process runs on)."""
    before = gc.get_threshold()
    gc.set_threshold(RUN_GC_THRESHOLD, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


@dataclass(frozen=True, slots=True)
class _Job:
    """What every batch of a run bills, and whom it tells."""

    period: Period
    zone: ZoneInfo
    due_days: int
    autopay: AutopayMode
    clock: Clock
    progress: Callable[[RunProgress], None] | None


async def _bill_batches(
    db: Database, start: RunProgress, job: _Job, batch_size: int
) -> RunProgress:
    """Bills batch after batch, `LANES` of them under way at once on PostgreSQL: while one
    is being written by the database, the next is read and priced here, on a connection of
    its own, so this process's work and the database's overlap. Each batch commits only
    once the one before it has committed and `progress` was told: batches commit in order,
    and a run stopped after k batches has billed those k and nothing of the next. SQLite
    has one writer: one batch at a time."""
    lanes = 1 if db.is_sqlite else LANES
    first: asyncio.Future[RunProgress] = asyncio.get_running_loop().create_future()
    first.set_result(start)
    previous: asyncio.Future[RunProgress] = first
    in_flight: deque[asyncio.Task[RunProgress]] = deque()
    done, after = start, 0
    try:
        while True:
            if len(in_flight) == lanes:
                done = await in_flight.popleft()
            async with db.read() as reader:
                customers = await billable_customers(
                    reader, job.period, job.zone, after=after, size=batch_size
                )
            if customers is None:
                break
            previous = asyncio.create_task(_batch(db, customers, previous, job))
            in_flight.append(previous)
            after = customers.last
        while in_flight:
            done = await in_flight.popleft()
        return done
    finally:
        for task in in_flight:
            task.cancel()
        await asyncio.gather(*in_flight, return_exceptions=True)


async def _batch(
    db: Database,
    customers: Customers,
    previous: "asyncio.Future[RunProgress]",
    job: _Job,
) -> RunProgress:
    """One batch's transaction: its rows written, then, once the batch before it has
    committed (or rolled back: then this one does too), the run's counts, and commit."""
    async with db.transaction() as session:
        bills = await billable_bills(writer(session), job.period, job.zone, customers)
        issued, autopaid = await _bill(session, job, bills, job.clock.now())
        before = await previous
        done = _grown(before, customers.count, issued, autopaid)
        if issued:
            await _count(session, before, done)
    if done.invoices and not before.invoices:
        await _analyze_what_grows(db)
    if job.progress is not None:
        job.progress(done)
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
    session: AsyncSession, job: _Job, bills: Sequence[Bill], now: datetime
) -> tuple[list[Bill], int]:
    """Writes the bills' invoices, lines, receivables, events and payments from the balance:
    one statement per table, each column's values one array (domains/writes.py RowsInsert).
    Returns the bills it issued (a customer someone billed meanwhile is skipped) and how
    many of their invoices it paid from the balance."""
    period = job.period
    if not bills:
        return [], 0
    due = now.astimezone(job.zone).date() + timedelta(days=job.due_days)
    tx = writer(session)
    made = await tx.insert(
        _INVOICES,
        [
            {
                "customer_id": bill.customer_id,
                "number": invoice_number(bill.customer_id, period),
                "amount": bill.amount,
                "currency": bill.currency,
            }
            for bill in bills
        ],
        kind=InvoiceKind.MONTHLY,
        period_start=period.start,
        period_end=period.end,
        status=InvoiceStatus.ISSUED,
        issued_at=now,
        due_date=due,
        created_at=now,
    )
    ids = {invoice.customer_id: invoice.id for invoice in made}
    issued = [bill for bill in bills if bill.customer_id in ids]
    if not issued:
        return [], 0
    expected = [_line(ids[bill.customer_id], bill, item) for bill in issued for item in bill.items]
    written = await tx.insert(_LINES, expected, period_start=period.start, period_end=period.end)
    if len(written) != len(expected):
        # Someone billed one of these subscriptions since the batch was read: this batch's
        # totals would not be its lines. Roll it back; a new run reads what is left.
        raise BillingRunConflict("a subscription of this batch was billed meanwhile")
    issuance = [
        IssuedInvoice(ids[b.customer_id], b.customer_id, b.amount, b.currency, now) for b in issued
    ]
    await post_issuance(session, issuance)
    for bill in issued:
        await _announce(session, ids[bill.customer_id], bill, period, due)
    autopaid = await pay_from_balance(session, issuance, job.autopay, now)
    return issued, autopaid


async def _count(session: AsyncSession, before: RunProgress, done: RunProgress) -> None:
    """Adds a batch to its run's record, in the batch's transaction."""
    await session.execute(
        update(runs)
        .where(runs.c.id == done.run_id)
        .values(
            invoices=runs.c.invoices + (done.invoices - before.invoices),
            lines=runs.c.lines + (done.lines - before.lines),
            amount=runs.c.amount + (done.amount - before.amount),
            autopaid=runs.c.autopaid + (done.autopaid - before.autopaid),
        )
    )


def _line(invoice_id: int, bill: Bill, item: Item) -> dict:
    charge = item.charge
    return {
        "invoice_id": invoice_id,
        "subscription_id": item.subscription_id,
        "tariff_id": item.tariff_id,
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
