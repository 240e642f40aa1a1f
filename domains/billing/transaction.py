"""Reading ledger entries: by id, per payment, and a customer's balance-account history."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import case, func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncConnection

from domains.base import MoneyNumeric
from domains.billing.models import EntrySide, LedgerAccount, Transaction
from domains.keyset import Ordering, Page, Window, fetch_pages
from domains.rows import fetch_rows, group_by, row_columns, select_rows

transactions = Transaction.__table__


@dataclass(frozen=True, slots=True)
class TransactionRow:
    id: int
    movement_id: uuid.UUID
    customer_id: int
    invoice_id: int | None
    payment_id: int | None
    account: LedgerAccount
    type: EntrySide
    amount: Decimal
    currency: str
    created_at: datetime


# Newest first; ids grow with time, so the id alone is a stable keyset.
LEDGER_ORDER = Ordering((transactions.c.id,), descending=True)


async def ledger_page(
    conn: AsyncConnection,
    customer_id: int,
    window: Window,
    *,
    account: LedgerAccount | None = None,
) -> Page[TransactionRow]:
    """A customer's ledger entries (or one account's of them), newest first."""
    stmt = select_rows(TransactionRow, transactions).where(
        transactions.c.customer_id == customer_id
    )
    if account is not None:
        stmt = stmt.where(transactions.c.account == account)
    pages = await fetch_pages(conn, TransactionRow, stmt, LEDGER_ORDER, window)
    return pages[None]


@dataclass(frozen=True, slots=True)
class BalanceEntryRow(TransactionRow):
    """A balance-account entry and the balance it left behind."""

    balance_after: Decimal


async def balance_history_page(
    conn: AsyncConnection, customer_id: int, window: Window
) -> Page[BalanceEntryRow]:
    """A customer's balance-account entries, newest first, each with the running balance.

    The running sum is a window over all of the customer's entries (oldest first, per
    currency), computed before the page is cut, in the page's one statement.
    """
    signed = case(
        (transactions.c.type == EntrySide.CREDIT, transactions.c.amount),
        else_=-transactions.c.amount,
    )
    running = func.sum(signed).over(
        partition_by=transactions.c.currency,
        order_by=transactions.c.id,
        rows=(None, 0),
    )
    entries = (
        select(
            *row_columns(TransactionRow, transactions),
            type_coerce(running, MoneyNumeric).label("balance_after"),
        )
        .where(
            transactions.c.customer_id == customer_id,
            transactions.c.account == LedgerAccount.CUSTOMER_BALANCE,
        )
        .subquery("balance_entries")
    )
    ordering = Ordering((entries.c.id,), descending=LEDGER_ORDER.descending)
    pages = await fetch_pages(conn, BalanceEntryRow, select(entries), ordering, window)
    return pages[None]


async def transactions_by_ids(
    conn: AsyncConnection, ids: Sequence[int]
) -> dict[int, TransactionRow]:
    stmt = select_rows(TransactionRow, transactions).where(transactions.c.id.in_(ids))
    return {row.id: row for row in await fetch_rows(conn, TransactionRow, stmt)}


async def transactions_by_payment_ids(
    conn: AsyncConnection, payment_ids: Sequence[int]
) -> dict[int, list[TransactionRow]]:
    stmt = (
        select_rows(TransactionRow, transactions)
        .where(transactions.c.payment_id.in_(payment_ids))
        .order_by(transactions.c.id)
    )
    return group_by(await fetch_rows(conn, TransactionRow, stmt), "payment_id", payment_ids)
