"""Reading invoices: by id, and newest-first pages per customer with filters."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncConnection

from domains.billing.models import Invoice, InvoiceStatus
from domains.errors import InvalidInput
from domains.keyset import Ordering, Page, Window, fetch_pages
from domains.rows import fetch_rows, select_rows

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


async def invoices_by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, InvoiceRow]:
    stmt = select_rows(InvoiceRow, invoices).where(invoices.c.id.in_(ids))
    return {row.id: row for row in await fetch_rows(conn, InvoiceRow, stmt)}


async def invoice_pages_by_customer_ids(
    conn: AsyncConnection,
    customer_ids: Sequence[int],
    invoice_filter: InvoiceFilter,
    window: Window,
) -> dict[int, Page[InvoiceRow]]:
    stmt = select_rows(InvoiceRow, invoices).where(invoices.c.customer_id.in_(customer_ids))
    if invoice_filter.statuses:
        stmt = stmt.where(invoices.c.status.in_(sorted(invoice_filter.statuses)))
    if invoice_filter.period_from:
        stmt = stmt.where(invoices.c.period_end >= invoice_filter.period_from)
    if invoice_filter.period_to:
        stmt = stmt.where(invoices.c.period_start <= invoice_filter.period_to)
    return await fetch_pages(
        conn,
        InvoiceRow,
        stmt,
        INVOICE_ORDER,
        window,
        partition=invoices.c.customer_id,
        parents=customer_ids,
    )
