"""Reading invoices: by id, and newest-first pages per customer with filters."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Select, bindparam

from domains.billing.models import Invoice, InvoiceStatus
from domains.errors import InvalidInput
from domains.keyset import Ordering, Page, PageRead, Window
from domains.reads import Read, Reader, any_of, select_rows

invoices = Invoice.__table__


@dataclass(frozen=True, slots=True)
class InvoiceRow:
    id: int
    customer_id: int
    subscription_id: int | None
    number: str
    period_start: date
    period_end: date
    amount: Decimal
    currency: str
    status: InvoiceStatus
    issued_at: datetime | None
    due_date: date | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class InvoiceFilter:
    """Hashable, so equal filters from many parents share one batched statement."""

    statuses: frozenset[InvoiceStatus] = frozenset()
    period_from: date | None = None
    period_to: date | None = None

    def __post_init__(self) -> None:
        if self.period_from and self.period_to and self.period_from > self.period_to:
            raise InvalidInput("period_from is after period_to")


INVOICE_ORDER = Ordering((invoices.c.period_start, invoices.c.id), descending=True)

INVOICES_BY_ID = Read(
    InvoiceRow, select_rows(InvoiceRow, invoices).where(any_of(invoices.c.id, "ids"))
)


def _of_customers(shape: tuple[bool, bool, bool]) -> Select:
    """Which of the filter's parts apply: statuses, period_from, period_to."""
    statuses, period_from, period_to = shape
    stmt = select_rows(InvoiceRow, invoices).where(any_of(invoices.c.customer_id, "customer_ids"))
    if statuses:
        stmt = stmt.where(any_of(invoices.c.status, "statuses"))
    if period_from:
        stmt = stmt.where(invoices.c.period_end >= bindparam("period_from"))
    if period_to:
        stmt = stmt.where(invoices.c.period_start <= bindparam("period_to"))
    return stmt


INVOICE_PAGES = PageRead(InvoiceRow, _of_customers, INVOICE_ORDER, partition=invoices.c.customer_id)


async def invoices_by_ids(reader: Reader, ids: Sequence[int]) -> dict[int, InvoiceRow]:
    return {row.id: row for row in await reader.fetch(INVOICES_BY_ID, ids=ids)}


async def invoice_pages_by_customer_ids(
    reader: Reader,
    customer_ids: Sequence[int],
    invoice_filter: InvoiceFilter,
    window: Window,
) -> dict[int, Page[InvoiceRow]]:
    parts = {
        "statuses": sorted(invoice_filter.statuses) or None,
        "period_from": invoice_filter.period_from,
        "period_to": invoice_filter.period_to,
    }
    given = {name: value for name, value in parts.items() if value is not None}
    return await INVOICE_PAGES.pages(
        reader,
        window,
        customer_ids,
        shape=tuple(value is not None for value in parts.values()),
        customer_ids=customer_ids,
        **given,
    )
