"""Reading invoice lines: each invoice's, in the order they were billed."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from domains.billing.models import InvoiceLine
from domains.reads import Read, Reader, any_of, group_by, select_rows

lines = InvoiceLine.__table__


@dataclass(frozen=True, slots=True)
class InvoiceLineRow:
    id: int
    invoice_id: int
    subscription_id: int
    tariff_id: int
    period_start: date
    period_end: date
    first_day: date
    last_day: date
    days: int
    unit_price: Decimal
    amount: Decimal
    currency: str
    description: str


LINES_BY_INVOICE_ID = Read(
    InvoiceLineRow,
    select_rows(InvoiceLineRow, lines)
    .where(any_of(lines.c.invoice_id, "invoice_ids"))
    .order_by(lines.c.invoice_id, lines.c.id),
)


async def lines_by_invoice_ids(
    reader: Reader, invoice_ids: Sequence[int]
) -> dict[int, list[InvoiceLineRow]]:
    rows = await reader.fetch(LINES_BY_INVOICE_ID, invoice_ids=invoice_ids)
    return group_by(rows, "invoice_id", invoice_ids)
