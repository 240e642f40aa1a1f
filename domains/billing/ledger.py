"""Posting balanced movements to the double-entry ledger (the `transactions` table).

A movement is a set of entries that balance per currency; the customer balance account
is credited when money arrives on the account and debited when it leaves, and
`customers.balance` caches its total, updated here in the same transaction. Nothing
updates or deletes an entry: a correction is a reversing movement.
"""

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domains.billing.models import EntrySide, LedgerAccount, Transaction
from domains.customers.models import Customer
from domains.reads import any_of
from domains.writes import RowsInsert, Write, writer

transactions = Transaction.__table__
customers = Customer.__table__

_ENTRIES = RowsInsert(
    transactions,
    (
        "movement_id",
        "customer_id",
        "invoice_id",
        "payment_id",
        "account",
        "type",
        "amount",
        "currency",
        "created_at",
    ),
)
# What the movements just written moved on each customer's balance account (credits less
# debits): the cached balances move by the ledger's own entries, every customer touched in
# one statement (UPDATE ... FROM), whatever their number. Rounded to cents: SQLite sums
# numerics as binary floats (PostgreSQL exactly).
_MOVED = (
    select(
        transactions.c.customer_id,
        func.round(
            func.sum(
                case(
                    (transactions.c.type == EntrySide.CREDIT, transactions.c.amount),
                    else_=-transactions.c.amount,
                )
            ),
            2,
        ).label("delta"),
    )
    .where(
        any_of(transactions.c.movement_id, "movement_ids"),
        transactions.c.account == LedgerAccount.CUSTOMER_BALANCE,
    )
    .group_by(transactions.c.customer_id)
    .subquery("moved")
)
_MOVE_BALANCES = Write(
    update(customers)
    .where(customers.c.id == _MOVED.c.customer_id)
    .values(balance=customers.c.balance + _MOVED.c.delta)
)


class UnbalancedMovement(ValueError):
    """A programming error: the entries of one movement do not balance."""


@dataclass(frozen=True, slots=True)
class Entry:
    account: LedgerAccount
    side: EntrySide
    amount: Decimal
    currency: str
    customer_id: int
    invoice_id: int | None = None
    payment_id: int | None = None


def signed(side: EntrySide, amount: Decimal) -> Decimal:
    """Debits positive, credits negative: a balanced movement sums to zero."""
    return amount if side is EntrySide.DEBIT else -amount


def check_balanced(entries: Sequence[Entry]) -> None:
    if len(entries) < 2:
        raise UnbalancedMovement("a movement needs at least two entries")
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for entry in entries:
        if entry.amount <= 0:
            raise UnbalancedMovement(f"entry amounts are positive, got {entry.amount}")
        if entry.account is LedgerAccount.RECEIVABLE and entry.invoice_id is None:
            raise UnbalancedMovement("a receivable entry names its invoice")
        totals[entry.currency] += signed(entry.side, entry.amount)
    unbalanced = {currency: total for currency, total in totals.items() if total}
    if unbalanced:
        raise UnbalancedMovement(f"debits and credits differ: {unbalanced}")


async def post_movement(session: AsyncSession, entries: Sequence[Entry], at: datetime) -> uuid.UUID:
    """Writes one balanced movement and moves the cached balances with it.

    The caller holds the row locks of the customers whose balance account it touches.
    """
    [movement_id] = await post_movements(session, [(entries, at)])
    return movement_id


async def post_movements(
    session: AsyncSession, movements: Sequence[tuple[Sequence[Entry], datetime]]
) -> list[uuid.UUID]:
    """Writes many balanced movements (each with its own time): all their entries in one
    statement, then the balances of every customer touched in one more.

    Loaders and the invoice run's batches post thousands at once; the rules are
    `post_movement`'s.
    """
    rows = []
    movement_ids = []
    # The movements that touch a balance account: what the balance update reads back.
    moving = []
    for entries, at in movements:
        check_balanced(entries)
        movement_id = uuid.uuid4()
        movement_ids.append(movement_id)
        for e in entries:
            rows.append(
                {
                    "movement_id": movement_id,
                    "customer_id": e.customer_id,
                    "invoice_id": e.invoice_id,
                    "payment_id": e.payment_id,
                    "account": e.account,
                    "type": e.side,
                    "amount": e.amount,
                    "currency": e.currency,
                    "created_at": at,
                }
            )
        if any(e.account is LedgerAccount.CUSTOMER_BALANCE for e in entries):
            moving.append(movement_id)
    tx = writer(session)
    await tx.insert(_ENTRIES, rows)
    if moving:
        await tx.execute(_MOVE_BALANCES, movement_ids=moving)
    return movement_ids
