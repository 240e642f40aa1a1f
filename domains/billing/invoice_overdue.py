"""Marking invoices overdue: an issued invoice still unpaid after its due date.

An invoice due on day D is overdue from the start of D+1 in the billing time zone
(`KABINET_BILLING_TIMEZONE`), the calendar its due date was set in. Each batch is one
transaction and one UPDATE: it picks the next issued invoices due before today, in
(due date, id) order after the previous batch's last, marks them `overdue` and writes one
`invoice.overdue` event for each row the UPDATE returns. Only `issued` ones are picked, so
a paid invoice is never marked, and a marked one is never picked again: a second pass marks
nothing, and the event is written once per invoice, in the transaction that marked it.

Payers lock the customer row, then the invoice (domains/billing/settlement.py). The pick
takes the invoices' row locks with SKIP LOCKED and never waits on a lock, so it can hold no
lock that a payer waits on while waiting for one of theirs: no deadlock. An invoice a payer
holds is left for the next pass, which finds it paid (not picked) or still issued (marked
then). SQLite has a single writer, and no row locks to skip.
"""

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, Date, Integer, bindparam, literal_column, select, tuple_, update

from domains.billing import events
from domains.billing.models import Invoice, InvoiceStatus
from domains.clock import SYSTEM_CLOCK, Clock
from domains.database import Database
from domains.writes import Write, writer

invoices = Invoice.__table__

BATCH_SIZE = 1000


@dataclass(frozen=True, slots=True)
class OverdueInvoiceRow:
    """An invoice just marked overdue: what its event says."""

    id: int
    customer_id: int
    number: str
    amount: Decimal
    currency: str
    due_date: date


# The next batch after (after_due, after_id); the partial index ix_invoices_issued_due holds
# exactly the issued invoices in this order, so each batch reads only what it marks. The
# status is a literal, not a parameter: a prepared statement's generic plan matches a
# partial index's predicate only against constants.
_PICK = (
    select(invoices.c.id)
    .where(
        invoices.c.status == literal_column(f"'{InvoiceStatus.ISSUED.value}'"),
        invoices.c.due_date < bindparam("today", type_=Date),
        tuple_(invoices.c.due_date, invoices.c.id)
        > tuple_(bindparam("after_due", type_=Date), bindparam("after_id", type_=BigInteger)),
    )
    .order_by(invoices.c.due_date, invoices.c.id)
    .limit(bindparam("size", type_=Integer))
    .with_for_update(skip_locked=True)
)
_MARK = Write(
    update(invoices)
    .where(invoices.c.id.in_(_PICK.scalar_subquery()))
    .values(status=InvoiceStatus.OVERDUE)
    .returning(
        invoices.c.id,
        invoices.c.customer_id,
        invoices.c.number,
        invoices.c.amount,
        invoices.c.currency,
        invoices.c.due_date,
    ),
    OverdueInvoiceRow,
)


async def mark_overdue_invoices(
    db: Database,
    *,
    zone: ZoneInfo,
    clock: Clock = SYSTEM_CLOCK,
    batch_size: int = BATCH_SIZE,
) -> int:
    """Marks every issued invoice due before today (in `zone`) overdue, a batch per
    transaction; returns how many it marked."""
    if batch_size < 1:
        raise ValueError(f"a batch holds at least one invoice, not {batch_size}")
    today = clock.now().astimezone(zone).date()
    after_due, after_id = date.min, 0
    marked = 0
    while True:
        async with db.transaction() as tx:
            rows = await writer(tx).fetch(
                _MARK, today=today, after_due=after_due, after_id=after_id, size=batch_size
            )
            for row in rows:
                await events.invoice_overdue(
                    tx,
                    invoice_id=row.id,
                    customer_id=row.customer_id,
                    number=row.number,
                    amount=row.amount,
                    currency=row.currency,
                    due_date=row.due_date,
                )
        marked += len(rows)
        if len(rows) < batch_size:
            return marked
        after_due, after_id = max((row.due_date, row.id) for row in rows)
