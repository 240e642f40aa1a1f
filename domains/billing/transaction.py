"""Reading ledger entries: by id, per payment, and a customer's balance-account history."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Select, Subquery, bindparam, case, func, select, type_coerce

from domains.base import MoneyNumeric
from domains.billing.models import EntrySide, LedgerAccount, Transaction
from domains.keyset import Ordering, Page, PageRead, Window
from domains.reads import Read, Reader, any_of, group_by, row_columns, select_rows

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


def _ledger(of_account: bool) -> Select:
    stmt = select_rows(TransactionRow, transactions).where(
        transactions.c.customer_id == bindparam("customer_id")
    )
    if of_account:
        stmt = stmt.where(transactions.c.account == bindparam("account"))
    return stmt


LEDGER_PAGES = PageRead(TransactionRow, _ledger, LEDGER_ORDER)


async def ledger_page(
    reader: Reader,
    customer_id: int,
    window: Window,
    *,
    account: LedgerAccount | None = None,
) -> Page[TransactionRow]:
    """A customer's ledger entries (or one account's of them), newest first."""
    if account is None:
        return await LEDGER_PAGES.page(reader, window, shape=False, customer_id=customer_id)
    return await LEDGER_PAGES.page(
        reader, window, shape=True, customer_id=customer_id, account=account
    )


@dataclass(frozen=True, slots=True)
class BalanceEntryRow(TransactionRow):
    """A balance-account entry and the balance it left behind."""

    balance_after: Decimal


def _balance_entries() -> Subquery:
    """A customer's balance-account entries, each with the running balance: a window over
    all of them (oldest first, per currency), computed before the page is cut."""
    signed = case(
        (transactions.c.type == EntrySide.CREDIT, transactions.c.amount),
        else_=-transactions.c.amount,
    )
    running = func.sum(signed).over(
        partition_by=transactions.c.currency,
        order_by=transactions.c.id,
        rows=(None, 0),
    )
    return (
        select(
            *row_columns(TransactionRow, transactions),
            type_coerce(running, MoneyNumeric).label("balance_after"),
        )
        .where(
            transactions.c.customer_id == bindparam("customer_id"),
            transactions.c.account == LedgerAccount.CUSTOMER_BALANCE,
        )
        .subquery("balance_entries")
    )


_balance = _balance_entries()
BALANCE_HISTORY = PageRead(
    BalanceEntryRow,
    select(_balance),
    Ordering((_balance.c.id,), descending=LEDGER_ORDER.descending),
)


async def balance_history_page(
    reader: Reader, customer_id: int, window: Window
) -> Page[BalanceEntryRow]:
    """A customer's balance-account entries, newest first, each with the running balance,
    in the page's one statement."""
    return await BALANCE_HISTORY.page(reader, window, customer_id=customer_id)


TRANSACTIONS_BY_ID = Read(
    TransactionRow,
    select_rows(TransactionRow, transactions).where(any_of(transactions.c.id, "ids")),
)
TRANSACTIONS_BY_PAYMENT_ID = Read(
    TransactionRow,
    select_rows(TransactionRow, transactions)
    .where(any_of(transactions.c.payment_id, "payment_ids"))
    .order_by(transactions.c.id),
)


async def transactions_by_ids(reader: Reader, ids: Sequence[int]) -> dict[int, TransactionRow]:
    return {row.id: row for row in await reader.fetch(TRANSACTIONS_BY_ID, ids=ids)}


async def transactions_by_payment_ids(
    reader: Reader, payment_ids: Sequence[int]
) -> dict[int, list[TransactionRow]]:
    rows = await reader.fetch(TRANSACTIONS_BY_PAYMENT_ID, payment_ids=payment_ids)
    return group_by(rows, "payment_id", payment_ids)
