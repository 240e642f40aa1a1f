"""Reading ledger transactions: the balanced entries behind each payment."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncConnection

from domains.billing.models import EntrySide, LedgerAccount, Transaction
from domains.rows import fetch_rows, group_by, select_rows

transactions = Transaction.__table__


@dataclass(frozen=True, slots=True)
class TransactionRow:
    id: int
    payment_id: int
    account: LedgerAccount
    type: EntrySide
    amount: Decimal
    currency: str
    created_at: datetime


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
