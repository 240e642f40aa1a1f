"""Autopay: the invoice run pays the invoices it issues from the customers' balances.

Subscribers of a Russian provider keep a prepaid balance; `KABINET_BILLING_AUTOPAY` says
what the run takes from it for a new invoice: `full` pays an invoice the balance covers
whole, `partial` also pays as much of one as the balance holds (the rest stays due, the
invoice `issued`), `off` pays nothing.

A payment is one payInvoice would write from the balance, by the same definitions
(domains.billing.balance_payment, settlement, payment_start): a succeeded `balance` payment
row, its movement from the balance to the invoice's receivable, `payment.created` and
`balance.changed`, and `invoice.paid` with the invoice's status when it pays all that is
due. It goes in the batch's transaction, after its invoices and receivables: all of it
commits with the invoices, or nothing does. It names no idempotency key: the invoice is
made once per customer and period, and its payment with it.

Set-based: a batch of invoices takes the same statements, one per table, however many.

Locks, in the documented order (domains.billing.settlement): the batch's customers that
have a balance, `FOR UPDATE` in id order, then their new invoices. A payer, a top-up or a
refund holding a customer's lock makes the batch wait for it (it already waited for it to
insert that customer's invoice) and the balance it then reads is what that left; one that
asks for a customer the batch holds waits for the batch to commit, and finds the invoice
paid, or what is left of it due. Nobody else sees the new invoices before the commit, so
they have no payments yet: what is due is their amount.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from domains.billing.balance_payment import (
    announce_balance_payment,
    balance_movement,
    check_funds,
)
from domains.billing.invoice import InvoiceRow
from domains.billing.invoice_issue import IssuedInvoice
from domains.billing.ledger import post_movements
from domains.billing.models import Invoice, Payment, PaymentMethod
from domains.billing.payment_start import PAYMENT_COLUMNS, Charge, payment_values
from domains.billing.settlement import amount_due, check_amount, check_payable, mark_paid
from domains.customers.customer import CustomerRow
from domains.customers.models import Customer
from domains.reads import any_of, select_rows
from domains.writes import RowsInsert, Write, writer

customers = Customer.__table__
invoices = Invoice.__table__

ZERO = Decimal("0.00")


class AutopayMode(StrEnum):
    FULL = "full"
    PARTIAL = "partial"
    OFF = "off"


_LOCK_FUNDED_CUSTOMERS = Write(
    select_rows(CustomerRow, customers)
    .where(any_of(customers.c.id, "customer_ids"), customers.c.balance > ZERO)
    .order_by(customers.c.id)
    .with_for_update(),
    CustomerRow,
)
_LOCK_INVOICES = Write(
    select_rows(InvoiceRow, invoices)
    .where(any_of(invoices.c.id, "invoice_ids"))
    .order_by(invoices.c.id)
    .with_for_update(),
    InvoiceRow,
)


@dataclass(frozen=True, slots=True)
class _Paid:
    """A payment the batch wrote, by the invoice it pays."""

    id: int
    invoice_id: int


_PAYMENTS = RowsInsert(Payment.__table__, PAYMENT_COLUMNS, returning=_Paid)


@dataclass(frozen=True, slots=True)
class _Paying:
    invoice: InvoiceRow
    amount: Decimal
    due: Decimal
    # The customer's balance once this payment is taken from it.
    balance: Decimal


def autopay_amount(mode: AutopayMode, balance: Decimal, due: Decimal) -> Decimal:
    """What the run takes from `balance` for an invoice with `due` left to pay."""
    if mode is AutopayMode.FULL:
        return due if balance >= due else ZERO
    if mode is AutopayMode.PARTIAL:
        return min(balance, due)
    return ZERO


async def pay_from_balance(
    session: AsyncSession, issued: Sequence[IssuedInvoice], mode: AutopayMode, now: datetime
) -> int:
    """Pays what `mode` allows of the batch's new invoices from their customers' balances;
    how many invoices it paid (in full or, `partial`, in part)."""
    if mode is AutopayMode.OFF or not issued:
        return 0
    tx = writer(session)
    funded = await tx.fetch(
        _LOCK_FUNDED_CUSTOMERS, customer_ids=sorted({i.customer_id for i in issued})
    )
    if not funded:
        return 0
    balances = {customer.id: customer for customer in funded}
    locked = await tx.fetch(
        _LOCK_INVOICES, invoice_ids=[i.id for i in issued if i.customer_id in balances]
    )
    paying = _charges(locked, balances, mode)
    if not paying:
        return 0
    made = await tx.insert(_PAYMENTS, [_payment_values(p, now) for p in paying])
    payment_ids = {payment.invoice_id: payment.id for payment in made}
    await post_movements(
        session,
        [(balance_movement(p.invoice, payment_ids[p.invoice.id], p.amount), now) for p in paying],
    )
    for p in paying:
        await announce_balance_payment(
            session, p.invoice, payment_ids[p.invoice.id], p.amount, p.balance
        )
    await mark_paid(session, [p.invoice for p in paying if p.amount == p.due], now)
    return len(paying)


def _charges(
    locked: Sequence[InvoiceRow], balances: dict[int, CustomerRow], mode: AutopayMode
) -> list[_Paying]:
    """Each invoice's payment by payInvoice's checks, a customer's balance going down with
    each invoice it pays (in id order)."""
    left = {customer_id: customer.balance for customer_id, customer in balances.items()}
    paying = []
    for invoice in locked:
        customer = balances[invoice.customer_id]
        check_payable(invoice, customer)
        due = amount_due(invoice, ())
        amount = autopay_amount(mode, left[customer.id], due)
        if not amount:
            continue
        check_amount(amount, due, invoice.currency)
        check_funds(left[customer.id], amount)
        left[customer.id] -= amount
        paying.append(_Paying(invoice, amount, due, left[customer.id]))
    return paying


def _payment_values(paying: _Paying, now: datetime) -> dict[str, Any]:
    invoice = paying.invoice
    charge = Charge(paying.amount, invoice.currency, PaymentMethod.BALANCE, invoice_id=invoice.id)
    return payment_values(invoice.customer_id, charge, now)
