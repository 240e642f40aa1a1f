"""Reading payments: by id, per invoice, and newest-first pages per customer."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncConnection

from domains.billing.models import Payment, PaymentMethod, PaymentStatus
from domains.keyset import Ordering, Page, Window, fetch_pages
from domains.rows import fetch_rows, group_by, select_rows

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


async def payments_by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, PaymentRow]:
    stmt = select_rows(PaymentRow, payments).where(payments.c.id.in_(ids))
    return {row.id: row for row in await fetch_rows(conn, PaymentRow, stmt)}


async def payments_by_invoice_ids(
    conn: AsyncConnection, invoice_ids: Sequence[int]
) -> dict[int, list[PaymentRow]]:
    stmt = (
        select_rows(PaymentRow, payments)
        .where(payments.c.invoice_id.in_(invoice_ids))
        .order_by(payments.c.created_at, payments.c.id)
    )
    return group_by(await fetch_rows(conn, PaymentRow, stmt), "invoice_id", invoice_ids)


async def payment_pages_by_customer_ids(
    conn: AsyncConnection, customer_ids: Sequence[int], window: Window
) -> dict[int, Page[PaymentRow]]:
    stmt = select_rows(PaymentRow, payments).where(payments.c.customer_id.in_(customer_ids))
    return await fetch_pages(
        conn,
        PaymentRow,
        stmt,
        PAYMENT_ORDER,
        window,
        partition=payments.c.customer_id,
        parents=customer_ids,
    )
