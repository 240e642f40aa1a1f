"""Reading payments: by id, per invoice, and newest-first pages per customer."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from domains.billing.models import Payment, PaymentMethod, PaymentStatus
from domains.keyset import Ordering, Page, PageRead, Window
from domains.reads import Read, Reader, any_of, group_by, select_rows

payments = Payment.__table__


@dataclass(frozen=True, slots=True)
class PaymentRow:
    id: int
    invoice_id: int | None
    customer_id: int
    amount: Decimal
    currency: str
    method: PaymentMethod
    status: PaymentStatus
    refunded_amount: Decimal
    created_at: datetime
    confirmation_url: str | None


PAYMENT_ORDER = Ordering((payments.c.created_at, payments.c.id), descending=True)

PAYMENTS_BY_ID = Read(
    PaymentRow, select_rows(PaymentRow, payments).where(any_of(payments.c.id, "ids"))
)
PAYMENTS_BY_INVOICE_ID = Read(
    PaymentRow,
    select_rows(PaymentRow, payments)
    .where(any_of(payments.c.invoice_id, "invoice_ids"))
    .order_by(payments.c.created_at, payments.c.id),
)
PAYMENT_PAGES = PageRead(
    PaymentRow,
    select_rows(PaymentRow, payments).where(any_of(payments.c.customer_id, "customer_ids")),
    PAYMENT_ORDER,
    partition=payments.c.customer_id,
)


async def payments_by_ids(reader: Reader, ids: Sequence[int]) -> dict[int, PaymentRow]:
    return {row.id: row for row in await reader.fetch(PAYMENTS_BY_ID, ids=ids)}


async def payments_by_invoice_ids(
    reader: Reader, invoice_ids: Sequence[int]
) -> dict[int, list[PaymentRow]]:
    rows = await reader.fetch(PAYMENTS_BY_INVOICE_ID, invoice_ids=invoice_ids)
    return group_by(rows, "invoice_id", invoice_ids)


async def payment_pages_by_customer_ids(
    reader: Reader, customer_ids: Sequence[int], window: Window
) -> dict[int, Page[PaymentRow]]:
    return await PAYMENT_PAGES.pages(reader, window, customer_ids, customer_ids=customer_ids)
