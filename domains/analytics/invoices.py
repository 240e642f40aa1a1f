"""Invoices issued per day and currency: the analytics consumer and the staff's read.

Counted is each `invoice.issued` event: one invoice, its amount billed. The day is the UTC
day of the invoice's `issued_at`, the time the run issued it (its clock's), which is also
what the invoice shows; the event's own time is when its batch committed, a moment later
(or, for a run given another clock, as the demo's past months are, much later). The
payload names the invoice, so the handler reads that time from it, as a refund's handler
reads its payment's method.
"""

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from domains.analytics.days import check_range, utc_day
from domains.analytics.models import InvoicesDaily
from domains.billing.models import Invoice
from domains.database import Database
from domains.events.cloudevent import CloudEvent
from domains.events.consumer import Handler
from domains.reads import Read, select_rows
from domains.writes import Write, writer

daily = InvoicesDaily.__table__
invoices = Invoice.__table__

_COUNTERS = ("invoices", "billed")
_day_row = postgresql.insert(daily).values(
    {name: bindparam(name) for name in ("day", "currency", *_COUNTERS)}
)
# Adds to one day's counters in one statement, creating the row on its first invoice.
_ADD = Write(
    _day_row.on_conflict_do_update(
        index_elements=[daily.c.day, daily.c.currency],
        set_={name: daily.c[name] + _day_row.excluded[name] for name in _COUNTERS},
    )
)


@dataclass(frozen=True, slots=True)
class IssuedAtRow:
    issued_at: datetime | None


ISSUED_AT = Read(
    IssuedAtRow, select_rows(IssuedAtRow, invoices).where(invoices.c.id == bindparam("invoice_id"))
)


async def on_invoice_issued(session: AsyncSession, event: CloudEvent) -> None:
    data = event.data
    tx = writer(session)
    found = await tx.fetch(ISSUED_AT, invoice_id=data["invoice_id"])
    if not found or found[0].issued_at is None:
        raise LookupError(f"invoice {data['invoice_id']} of {event.type} not issued")
    await tx.execute(
        _ADD,
        day=utc_day(found[0].issued_at),
        currency=data["currency"],
        invoices=1,
        billed=Decimal(data["amount"]),
    )


HANDLERS: dict[str, Handler] = {"invoice.issued": on_invoice_issued}


@dataclass(frozen=True, slots=True)
class InvoiceTotalsRow:
    """One currency's sums over the range: amounts in different currencies do not add."""

    currency: str
    invoices: int
    billed: Decimal


@dataclass(frozen=True, slots=True)
class InvoiceDayRow(InvoiceTotalsRow):
    day: date


@dataclass(frozen=True, slots=True)
class InvoiceStatistics:
    start: date
    end: date
    days: list[InvoiceDayRow]
    totals: list[InvoiceTotalsRow]


_in_range = (daily.c.day >= bindparam("start")) & (daily.c.day <= bindparam("end"))
INVOICE_DAYS = Read(
    InvoiceDayRow,
    select(daily.c.currency, daily.c.invoices, daily.c.billed, daily.c.day)
    .where(_in_range)
    .order_by(daily.c.day, daily.c.currency),
)
INVOICE_TOTALS = Read(
    InvoiceTotalsRow,
    select(
        daily.c.currency,
        func.sum(daily.c.invoices).label("invoices"),
        func.sum(daily.c.billed).label("billed"),
    )
    .where(_in_range)
    .group_by(daily.c.currency)
    .order_by(daily.c.currency),
)


async def invoice_statistics(db: Database, start: date, end: date) -> InvoiceStatistics:
    """The days from `start` to `end` inclusive on which invoices were issued, and totals."""
    check_range(start, end)
    async with db.read() as reader:
        days = await reader.fetch(INVOICE_DAYS, start=start, end=end)
        totals = await reader.fetch(INVOICE_TOTALS, start=start, end=end)
    return InvoiceStatistics(start=start, end=end, days=days, totals=totals)
