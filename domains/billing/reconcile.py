"""Checking every ledger invariant over the whole database; `kabinet billing reconcile`.

Each finding names the rows it is about. The checks:
- each movement's debits equal its credits, per currency;
- each customer's cached balance equals their balance-account credits less debits;
- no invoice's payments (less refunds) exceed its amount;
- each payment's `refunded_amount` equals the sum of its refunds;
- an issued, overdue or paid invoice is `paid` exactly when its payments cover it;
- a pending or failed payment (a card payment the provider has not confirmed) moved no
  money: it has no ledger entries;
- a succeeded (or refunded) payment has its movement: the receivable of its invoice (the
  balance, for a top-up) credited with its amount;
- each invoice's receivable (debits less credits) is what is due (`settlement.amount_due`):
  the amount less what was paid net of refunds once issued, nothing for a draft or a void
  one;
- each idempotency key names one payment or one refund of its own customer: the request
  that claimed it wrote it in the same transaction;
- a payment's customer and currency are its invoice's, and each ledger entry's customer is
  its payment's and its invoice's; an entry on a customer's balance is in their currency;
- a payment is `refunded` exactly when its refunds reach its amount;
- the provider clearing account holds what the acquirer captured and has not paid out:
  each settled card payment's amount, once, and nothing else (no payout is booked yet, so
  per currency it nets to the settled card payments);
- each customer's `promised_credit` account (debits less credits) is what their promised
  payments still owe (amount less repaid), and a promised payment is `repaid` exactly when
  it is repaid in full;
- an invoice with lines is their sum, each line in the invoice's currency and billing a
  subscription of the invoice's customer (an invoice without lines, made before them and
  naming no subscription, is not checked against any).
"""

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import ColumnElement, Row, Subquery, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from domains.billing.invoice_issue import ISSUED
from domains.billing.models import (
    EntrySide,
    IdempotencyKey,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    LedgerAccount,
    Payment,
    PaymentMethod,
    PaymentStatus,
    PromisedPayment,
    PromisedPaymentStatus,
    Refund,
    Transaction,
)
from domains.billing.settlement import SETTLED, amount_due_column, paid_per_invoice
from domains.customers.models import Customer, Subscription
from domains.database import Database
from domains.events.subject import CUSTOMER

transactions = Transaction.__table__
customers = Customer.__table__
invoices = Invoice.__table__
lines = InvoiceLine.__table__
subscriptions = Subscription.__table__
payments = Payment.__table__
refunds = Refund.__table__
keys = IdempotencyKey.__table__
promises = PromisedPayment.__table__


@dataclass(frozen=True, slots=True)
class Problem:
    check: str
    row: str  # e.g. "customer:42", "movement:<uuid>"
    detail: str

    def __str__(self) -> str:
        return f"{self.check}: {self.row}: {self.detail}"


ZERO = Decimal(0)


def _sum(expression: ColumnElement[Decimal]) -> ColumnElement[Decimal]:
    """SUM rounded to cents: exact on PostgreSQL; SQLite adds numerics as binary floats."""
    return func.round(func.sum(expression), 2)


def _debits_less_credits() -> ColumnElement[Decimal]:
    return case(
        (transactions.c.type == EntrySide.DEBIT, transactions.c.amount),
        else_=-transactions.c.amount,
    )


async def reconcile(db: Database) -> list[Problem]:
    """Reads in one repeatable snapshot on PostgreSQL, so concurrent payments cannot skew it."""
    problems: list[Problem] = []
    async with db.transaction(
        isolation_level=None if db.is_sqlite else "REPEATABLE READ"
    ) as session:
        net = _sum(_debits_less_credits())
        unbalanced = (
            select(transactions.c.movement_id, transactions.c.currency, net.label("net"))
            .group_by(transactions.c.movement_id, transactions.c.currency)
            .having(net != ZERO)
        )
        for row in await session.execute(unbalanced):
            problems.append(
                Problem(
                    "unbalanced_movement",
                    f"movement:{row.movement_id}",
                    f"debits exceed credits by {row.net} {row.currency}",
                )
            )

        ledger = (
            select(
                transactions.c.customer_id,
                (-_sum(_debits_less_credits())).label("total"),
            )
            .where(transactions.c.account == LedgerAccount.CUSTOMER_BALANCE)
            .group_by(transactions.c.customer_id)
            .subquery()
        )
        total = func.coalesce(ledger.c.total, ZERO)
        balances = (
            select(customers.c.id, customers.c.balance, total.label("ledger"))
            .select_from(customers.outerjoin(ledger, ledger.c.customer_id == customers.c.id))
            # SQLite keeps `balance + delta` as a binary float: compare cents.
            .where(func.round(customers.c.balance, 2) != total)
        )
        for row in await session.execute(balances):
            problems.append(
                Problem(
                    "balance_mismatch",
                    # Named as its events are, so the finding leads to them in the outbox.
                    CUSTOMER.of(row.id),
                    f"balance {row.balance} but its ledger entries sum to {row.ledger}",
                )
            )

        paid = paid_per_invoice()
        paid_total = func.coalesce(paid.c.paid, ZERO)
        rows = await session.execute(
            select(invoices.c.id, invoices.c.amount, invoices.c.status, paid_total.label("paid"))
            .select_from(invoices.outerjoin(paid, paid.c.invoice_id == invoices.c.id))
            .where(
                or_(
                    paid_total > invoices.c.amount,
                    invoices.c.status.in_(ISSUED),
                )
            )
        )
        for row in rows:
            covered = Decimal(row.paid) >= row.amount
            if Decimal(row.paid) > row.amount:
                problems.append(
                    Problem(
                        "invoice_overpaid", f"invoice:{row.id}", f"paid {row.paid} of {row.amount}"
                    )
                )
            if covered != (row.status is InvoiceStatus.PAID):
                problems.append(
                    Problem(
                        "invoice_status",
                        f"invoice:{row.id}",
                        f"status {row.status} but paid {row.paid} of {row.amount}",
                    )
                )

        refunded = (
            select(refunds.c.payment_id, _sum(refunds.c.amount).label("total"))
            .group_by(refunds.c.payment_id)
            .subquery()
        )
        refunded_total = func.coalesce(refunded.c.total, ZERO)
        rows = await session.execute(
            select(payments.c.id, payments.c.refunded_amount, refunded_total.label("refunds"))
            .select_from(payments.outerjoin(refunded, refunded.c.payment_id == payments.c.id))
            .where(payments.c.refunded_amount != refunded_total)
        )
        for row in rows:
            problems.append(
                Problem(
                    "refunds_mismatch",
                    f"payment:{row.id}",
                    f"refunded_amount {row.refunded_amount} but refunds sum to {row.refunds}",
                )
            )

        rows = await session.execute(
            select(payments.c.id, payments.c.status, func.count(transactions.c.id).label("n"))
            .join(transactions, transactions.c.payment_id == payments.c.id)
            .where(payments.c.status.in_((PaymentStatus.PENDING, PaymentStatus.FAILED)))
            .group_by(payments.c.id, payments.c.status)
        )
        for row in rows:
            problems.append(
                Problem(
                    "unsettled_payment_entries",
                    f"payment:{row.id}",
                    f"a {row.status} payment has {row.n} ledger entries",
                )
            )

        problems += await _settled_payments_without_movement(session)
        problems += await _receivable_mismatches(session, paid)
        problems += await _orphan_keys(session)
        problems += await _crossed_owners(session)
        problems += await _refunded_status(session)
        problems += await _provider_clearing(session)
        problems += await _invoice_lines(session)
        problems += await _promised_credit(session)
    return problems


async def _promised_credit(session: AsyncSession) -> list[Problem]:
    """The credit the books say each customer owes against what their promises say."""
    booked = (
        select(transactions.c.customer_id, _sum(_debits_less_credits()).label("total"))
        .where(transactions.c.account == LedgerAccount.PROMISED_CREDIT)
        .group_by(transactions.c.customer_id)
        .subquery()
    )
    owed = (
        select(promises.c.customer_id, _sum(promises.c.amount - promises.c.repaid).label("total"))
        .group_by(promises.c.customer_id)
        .subquery()
    )
    on_books, promised = func.coalesce(booked.c.total, ZERO), func.coalesce(owed.c.total, ZERO)
    rows = await session.execute(
        select(customers.c.id, on_books.label("booked"), promised.label("owed"))
        .select_from(
            customers.outerjoin(booked, booked.c.customer_id == customers.c.id).outerjoin(
                owed, owed.c.customer_id == customers.c.id
            )
        )
        .where(func.round(on_books - promised, 2) != ZERO)
    )
    found = [
        Problem(
            "promised_credit",
            CUSTOMER.of(row.id),
            f"promised credit {row.booked} on the books but its promises owe {row.owed}",
        )
        for row in rows
    ]
    repaid = promises.c.repaid == promises.c.amount
    rows = await session.execute(
        select(promises.c.id, promises.c.status, promises.c.repaid, promises.c.amount).where(
            (promises.c.status == PromisedPaymentStatus.REPAID) != repaid
        )
    )
    found += [
        Problem(
            "promised_payment_status",
            f"promised_payment:{row.id}",
            f"status {row.status} with {row.repaid} of {row.amount} repaid",
        )
        for row in rows
    ]
    return found


async def _invoice_lines(session: AsyncSession) -> list[Problem]:
    """What an invoice says it bills against what its lines bill."""
    billed = (
        select(lines.c.invoice_id, _sum(lines.c.amount).label("total"))
        .group_by(lines.c.invoice_id)
        .subquery()
    )
    rows = await session.execute(
        select(invoices.c.id, invoices.c.amount, billed.c.total)
        .join(billed, billed.c.invoice_id == invoices.c.id)
        # SQLite sums in binary floats: compare cents.
        .where(func.round(invoices.c.amount, 2) != billed.c.total)
    )
    found = [
        Problem(
            "invoice_lines_total",
            f"invoice:{row.id}",
            f"amount {row.amount} but its lines sum to {row.total}",
        )
        for row in rows
    ]
    rows = await session.execute(
        select(
            lines.c.id,
            lines.c.invoice_id,
            lines.c.currency,
            invoices.c.currency.label("invoiced_in"),
            subscriptions.c.customer_id,
            invoices.c.customer_id.label("invoiced"),
        )
        .join(invoices, invoices.c.id == lines.c.invoice_id)
        .join(subscriptions, subscriptions.c.id == lines.c.subscription_id)
        .where(
            or_(
                lines.c.currency != invoices.c.currency,
                subscriptions.c.customer_id != invoices.c.customer_id,
            )
        )
    )
    for row in rows:
        if row.currency != row.invoiced_in:
            found.append(
                Problem(
                    "invoice_line_currency",
                    f"invoice_line:{row.id}",
                    f"{row.currency} on invoice {row.invoice_id} in {row.invoiced_in}",
                )
            )
        if row.customer_id != row.invoiced:
            found.append(
                Problem(
                    "invoice_line_owner",
                    f"invoice_line:{row.id}",
                    f"bills a subscription of customer {row.customer_id} on invoice"
                    f" {row.invoice_id} of customer {row.invoiced}",
                )
            )
    return found


async def _crossed_owners(session: AsyncSession) -> list[Problem]:
    """Rows that tie one customer's money to another's (or to another currency)."""
    found: list[Problem] = []
    rows = await session.execute(
        select(payments.c.id, invoices.c.id.label("invoice_id"))
        .join(invoices, invoices.c.id == payments.c.invoice_id)
        .where(
            or_(
                payments.c.customer_id != invoices.c.customer_id,
                payments.c.currency != invoices.c.currency,
            )
        )
    )
    found += [
        Problem(
            "payment_owner",
            f"payment:{row.id}",
            f"pays invoice {row.invoice_id} of another customer or currency",
        )
        for row in rows
    ]
    owners = ((payments, transactions.c.payment_id), (invoices, transactions.c.invoice_id))
    for parent, column in owners:
        rows = await session.execute(
            select(transactions.c.id, parent.c.id.label("parent"))
            .join(parent, parent.c.id == column)
            .where(transactions.c.customer_id != parent.c.customer_id)
        )
        found += [
            Problem(
                "entry_owner",
                f"entry:{row.id}",
                f"booked for another customer than its {parent.name[:-1]} {row.parent}",
            )
            for row in rows
        ]
    rows = await session.execute(
        select(transactions.c.id, transactions.c.currency, customers.c.currency.label("own"))
        .join(customers, customers.c.id == transactions.c.customer_id)
        .where(
            transactions.c.account == LedgerAccount.CUSTOMER_BALANCE,
            transactions.c.currency != customers.c.currency,
        )
    )
    found += [
        Problem("balance_currency", f"entry:{row.id}", f"{row.currency} on a {row.own} balance")
        for row in rows
    ]
    return found


async def _refunded_status(session: AsyncSession) -> list[Problem]:
    fully = payments.c.refunded_amount == payments.c.amount
    rows = await session.execute(
        select(
            payments.c.id, payments.c.status, payments.c.amount, payments.c.refunded_amount
        ).where(
            or_(
                and_(payments.c.status == PaymentStatus.REFUNDED, ~fully),
                and_(payments.c.status == PaymentStatus.SUCCEEDED, fully),
            )
        )
    )
    return [
        Problem(
            "refunded_status",
            f"payment:{row.id}",
            f"status {row.status} with {row.refunded_amount} of {row.amount} refunded",
        )
        for row in rows
    ]


async def _provider_clearing(session: AsyncSession) -> list[Problem]:
    """Clearing entries that no settled card payment explains, and settled card payments
    whose clearing is not their amount: money the books say the acquirer owes, wrongly."""
    card = and_(payments.c.method == PaymentMethod.CARD, payments.c.status.in_(SETTLED))
    clearing = transactions.c.account == LedgerAccount.PROVIDER_CLEARING
    stray = await session.execute(
        select(transactions.c.id, transactions.c.payment_id)
        .select_from(transactions.outerjoin(payments, payments.c.id == transactions.c.payment_id))
        .where(clearing, or_(payments.c.id.is_(None), ~card))
    )
    found = [
        Problem(
            "provider_clearing",
            f"entry:{row.id}",
            "on provider clearing without a payment"
            if row.payment_id is None
            else f"on provider clearing for payment {row.payment_id}, not a settled card payment",
        )
        for row in stray
    ]
    cleared = (
        select(transactions.c.payment_id, _sum(_debits_less_credits()).label("net"))
        .where(clearing)
        .group_by(transactions.c.payment_id)
        .subquery()
    )
    held = func.coalesce(cleared.c.net, ZERO)
    rows = await session.execute(
        select(payments.c.id, payments.c.amount, held.label("held"))
        .select_from(payments.outerjoin(cleared, cleared.c.payment_id == payments.c.id))
        # SQLite sums in binary floats: compare cents.
        .where(card, func.round(held, 2) != payments.c.amount)
    )
    found += [
        Problem(
            "provider_clearing",
            f"payment:{row.id}",
            f"a settled card payment of {row.amount} holds {row.held} on provider clearing",
        )
        for row in rows
    ]
    return found


async def _settled_payments_without_movement(session: AsyncSession) -> list[Problem]:
    """The money in is the credit to the invoice's receivable, or to the balance (a top-up).

    A refund credits the balance of a payment that paid an invoice: not counted here.
    """
    credited = func.coalesce(func.sum(transactions.c.amount), ZERO)
    target = or_(
        and_(
            payments.c.invoice_id.is_not(None),
            transactions.c.account == LedgerAccount.RECEIVABLE,
            transactions.c.invoice_id == payments.c.invoice_id,
        ),
        and_(
            payments.c.invoice_id.is_(None),
            transactions.c.account == LedgerAccount.CUSTOMER_BALANCE,
        ),
    )
    rows = await session.execute(
        select(payments.c.id, payments.c.status, payments.c.amount, credited.label("credited"))
        .select_from(
            payments.outerjoin(
                transactions,
                and_(
                    transactions.c.payment_id == payments.c.id,
                    transactions.c.type == EntrySide.CREDIT,
                    target,
                ),
            )
        )
        .where(payments.c.status.in_(SETTLED))
        .group_by(payments.c.id, payments.c.status, payments.c.amount)
        .having(func.round(credited, 2) != func.round(payments.c.amount, 2))
    )
    return [
        Problem(
            "settled_payment_entries",
            f"payment:{row.id}",
            f"a {row.status} payment of {row.amount} credited {row.credited} to what it pays",
        )
        for row in rows
    ]


async def _receivable_mismatches(session: AsyncSession, paid: Subquery) -> list[Problem]:
    receivable = (
        select(transactions.c.invoice_id, _sum(_debits_less_credits()).label("total"))
        .where(transactions.c.account == LedgerAccount.RECEIVABLE)
        .group_by(transactions.c.invoice_id)
        .subquery()
    )
    total = func.coalesce(receivable.c.total, ZERO)
    due = amount_due_column(paid)
    rows = await session.execute(
        select(invoices.c.id, invoices.c.status, due.label("due"), total.label("receivable"))
        .select_from(
            invoices.outerjoin(paid, paid.c.invoice_id == invoices.c.id).outerjoin(
                receivable, receivable.c.invoice_id == invoices.c.id
            )
        )
        # SQLite computes in binary floats: compare cents.
        .where(func.round(due - total, 2) != ZERO)
    )
    return [
        Problem(
            "invoice_receivable",
            f"invoice:{row.id}",
            f"a {row.status} invoice owes {row.due} but its receivable is {row.receivable}",
        )
        for row in rows
    ]


async def _orphan_keys(session: AsyncSession) -> list[Problem]:
    """A key naming no answer, two, or another customer's: a retry would answer wrongly."""
    refunded = payments.alias("refunded")
    owner = func.coalesce(payments.c.customer_id, refunded.c.customer_id)
    rows = await session.execute(
        select(keys.c.id, keys.c.payment_id, keys.c.refund_id, owner.label("owner"))
        .select_from(
            keys.outerjoin(payments, payments.c.id == keys.c.payment_id)
            .outerjoin(refunds, refunds.c.id == keys.c.refund_id)
            .outerjoin(refunded, refunded.c.id == refunds.c.payment_id)
        )
        .where(
            or_(
                (payments.c.id.is_(None)) == (refunds.c.id.is_(None)),
                owner != keys.c.customer_id,
            )
        )
    )
    return [_orphan_key(row) for row in rows]


def _orphan_key(row: Row) -> Problem:
    if row.payment_id is None and row.refund_id is None:
        found = "names no payment and no refund"
    elif row.payment_id is not None and row.refund_id is not None:
        found = f"names payment {row.payment_id} and refund {row.refund_id}"
    else:
        answer = f"payment {row.payment_id}" if row.refund_id is None else f"refund {row.refund_id}"
        found = f"names {answer} of customer {row.owner}, not its own"
    return Problem("idempotency_key_payment", f"idempotency_key:{row.id}", found)
