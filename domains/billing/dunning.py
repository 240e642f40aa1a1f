"""Dunning: payment reminders around an unpaid invoice's due date, and the worker's pass.

Reminders: for each offset of `KABINET_DUNNING_REMINDERS` (days from the due date, in the
billing time zone; negative before it), an issued or overdue invoice gets one
`invoice.payment_reminder` on the day its due date plus the offset comes, or on a later pass
while the next offset's day has not come yet (a worker that was down a day still sends it;
one down for longer sends only the latest reminder due, not a burst of stale ones). The
last offset's window stays open: an invoice unpaid since before any pass gets that one.
`invoice_reminders` holds what was sent, unique per (invoice, offset), inserted in the
transaction that writes the event: a second pass, or a second worker, sends nothing again.

Each batch is one transaction: it picks the next unpaid invoices of one offset's window in
(due date, id) order, locking them `FOR KEY SHARE SKIP LOCKED` (the reminders' foreign key
takes that lock anyway): an invoice a payer holds is left for the next pass, which finds it
paid (then no reminder) or still unpaid, so the pass never waits on a payer's locks.

`run_dunning` is the worker's pass: reminders, then promised payments that ran out
(domains/billing/promised_payment.py), then suspension for debt (suspension.py).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    Date,
    Integer,
    bindparam,
    exists,
    func,
    literal_column,
    or_,
    select,
    tuple_,
)

from domains.billing import events
from domains.billing.models import Invoice, InvoiceReminder, InvoiceStatus, Payment
from domains.billing.promised_payment import expire_promised_payments
from domains.billing.settlement import SETTLED
from domains.billing.suspension import suspend_for_debt
from domains.clock import SYSTEM_CLOCK, Clock
from domains.database import Database
from domains.writes import RowsInsert, Write, writer

invoices = Invoice.__table__
payments = Payment.__table__
reminders = InvoiceReminder.__table__

BATCH_SIZE = 1000


@dataclass(frozen=True, slots=True)
class ReminderRow:
    """An unpaid invoice whose reminder is due: what the event says."""

    id: int
    customer_id: int
    number: str
    amount_due: Decimal
    currency: str
    due_date: date


@dataclass(frozen=True, slots=True)
class _Sent:
    invoice_id: int


# What the invoice's payments brought in and kept; SQLite sums numerics as binary floats.
_PAID = (
    select(
        func.round(func.coalesce(func.sum(payments.c.amount - payments.c.refunded_amount), 0), 2)
    )
    .where(
        payments.c.invoice_id == invoices.c.id,
        or_(*(payments.c.status == status for status in SETTLED)),
    )
    .scalar_subquery()
)
# Statuses are literals: the partial indexes by due date (issued, overdue) match constants.
_UNPAID = or_(
    invoices.c.status == literal_column(f"'{InvoiceStatus.ISSUED.value}'"),
    invoices.c.status == literal_column(f"'{InvoiceStatus.OVERDUE.value}'"),
)
_PICK = Write(
    select(
        invoices.c.id,
        invoices.c.customer_id,
        invoices.c.number,
        (invoices.c.amount - _PAID).label("amount_due"),
        invoices.c.currency,
        invoices.c.due_date,
    )
    .where(
        _UNPAID,
        invoices.c.due_date <= bindparam("due_until", type_=Date),
        invoices.c.due_date > bindparam("due_after", type_=Date),
        tuple_(invoices.c.due_date, invoices.c.id)
        > tuple_(bindparam("after_due", type_=Date), bindparam("after_id", type_=BigInteger)),
        ~exists().where(
            reminders.c.invoice_id == invoices.c.id,
            reminders.c.offset_days == bindparam("of_offset", type_=Integer),
        ),
    )
    .order_by(invoices.c.due_date, invoices.c.id)
    .limit(bindparam("size", type_=Integer))
    .with_for_update(skip_locked=True, key_share=True, of=invoices),
    ReminderRow,
)
_SEND = RowsInsert(
    reminders,
    ("invoice_id",),
    shared=("offset_days", "sent_at"),
    skip_conflicts=("invoice_id", "offset_days"),
    returning=_Sent,
)


def reminder_windows(offsets: Sequence[int], today: date) -> list[tuple[int, date, date]]:
    """(offset, due after, due until) per offset: an invoice due in (after, until] has that
    offset's reminder due today, its next offset's not yet."""
    ordered = sorted(offsets)
    windows = []
    for n, offset in enumerate(ordered):
        until = today - timedelta(days=offset)
        after = today - timedelta(days=ordered[n + 1]) if n + 1 < len(ordered) else date.min
        windows.append((offset, after, until))
    return windows


async def send_payment_reminders(
    db: Database,
    *,
    zone: ZoneInfo,
    offsets: Sequence[int],
    clock: Clock = SYSTEM_CLOCK,
    batch_size: int = BATCH_SIZE,
) -> int:
    """Sends every reminder due today (in `zone`), once each; how many it sent."""
    if batch_size < 1:
        raise ValueError(f"a batch holds at least one invoice, not {batch_size}")
    now = clock.now()
    sent = 0
    for offset, due_after, due_until in reminder_windows(offsets, now.astimezone(zone).date()):
        sent += await _remind(db, offset, due_after, due_until, now, batch_size)
    return sent


async def _remind(
    db: Database, offset: int, due_after: date, due_until: date, now: datetime, size: int
) -> int:
    after_due, after_id = date.min, 0
    sent = 0
    while True:
        async with db.transaction() as tx:
            w = writer(tx)
            rows = await w.fetch(
                _PICK,
                due_until=due_until,
                due_after=due_after,
                after_due=after_due,
                after_id=after_id,
                of_offset=offset,
                size=size,
            )
            written = (
                await w.insert(
                    _SEND, [{"invoice_id": row.id} for row in rows], offset_days=offset, sent_at=now
                )
                if rows
                else []
            )
            new = {row.invoice_id for row in written}
            for row in rows:
                if row.id in new:
                    await events.invoice_payment_reminder(
                        tx,
                        invoice_id=row.id,
                        customer_id=row.customer_id,
                        number=row.number,
                        amount_due=row.amount_due,
                        currency=row.currency,
                        due_date=row.due_date,
                        offset_days=offset,
                    )
        sent += len(new)
        if len(rows) < size:
            return sent
        after_due, after_id = max((row.due_date, row.id) for row in rows)


@dataclass(frozen=True, slots=True)
class DunningPass:
    """What one pass did: reminders sent, promised payments expired, subscriptions
    suspended for debt."""

    reminded: int
    expired: int
    suspended: int


async def run_dunning(
    db: Database,
    *,
    zone: ZoneInfo,
    offsets: Sequence[int],
    suspend_after_days: int,
    clock: Clock = SYSTEM_CLOCK,
) -> DunningPass:
    reminded = await send_payment_reminders(db, zone=zone, offsets=offsets, clock=clock)
    expired = await expire_promised_payments(db, clock=clock)
    suspended = await suspend_for_debt(db, zone=zone, after_days=suspend_after_days, clock=clock)
    return DunningPass(reminded, expired, suspended)
