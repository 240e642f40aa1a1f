"""What money movements share: row locks in one order, and how much of an invoice is due.

Every action that moves a customer's money locks the customer row, then the invoice row,
then the payment row (`SELECT ... FOR UPDATE`; SQLite's single writer serialises
instead), always in that order, so two actions never wait on each other crosswise.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import ColumnElement, Row, Subquery, bindparam, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domains.base import CENT, MAX_MONEY
from domains.billing import events
from domains.billing.errors import InvalidAmount, InvoiceNotPayable
from domains.billing.invoice import InvoiceRow
from domains.billing.invoice_issue import ISSUED
from domains.billing.models import Invoice, InvoiceStatus, Payment, PaymentStatus
from domains.billing.payment import PaymentRow, payments_by_invoice_ids
from domains.billing.suspension import resume_cleared
from domains.customers.customer import CustomerRow
from domains.customers.models import Customer
from domains.reads import any_of, select_rows
from domains.writes import Write, writer

customers = Customer.__table__
invoices = Invoice.__table__
payments = Payment.__table__

# Invoices that take payments (not draft, paid or void).
PAYABLE = (InvoiceStatus.ISSUED, InvoiceStatus.OVERDUE)
# Payments whose money arrived; a refunded one counts with what was not given back.
SETTLED = (PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED)


_LOCK_CUSTOMER = Write(
    select_rows(CustomerRow, customers)
    .where(customers.c.id == bindparam("customer_id"))
    .with_for_update(),
    CustomerRow,
)
_LOCK_INVOICE = Write(
    select_rows(InvoiceRow, invoices)
    .where(invoices.c.id == bindparam("invoice_id"))
    .with_for_update(),
    InvoiceRow,
)
_LOCK_PAYMENT = Write(
    select_rows(PaymentRow, payments)
    .where(payments.c.id == bindparam("payment_id"))
    .with_for_update(),
    PaymentRow,
)
_MARK_PAID = Write(
    update(invoices).where(any_of(invoices.c.id, "invoice_ids")).values(status=InvoiceStatus.PAID)
)


async def lock_customer(session: AsyncSession, customer_id: int) -> CustomerRow | None:
    found = await writer(session).fetch(_LOCK_CUSTOMER, customer_id=customer_id)
    return found[0] if found else None


async def lock_invoice(session: AsyncSession, invoice_id: int) -> InvoiceRow | None:
    found = await writer(session).fetch(_LOCK_INVOICE, invoice_id=invoice_id)
    return found[0] if found else None


async def lock_payment(session: AsyncSession, payment_id: int) -> PaymentRow:
    """The payment, which exists: the caller found it before locking its customer."""
    [payment] = await writer(session).fetch(_LOCK_PAYMENT, payment_id=payment_id)
    return payment


@dataclass(frozen=True, slots=True)
class PaymentOwner:
    """Whose a payment is, read before the locks (which take the customer first)."""

    id: int
    customer_id: int
    invoice_id: int | None


def amount_due(invoice: InvoiceRow | Row, payments: Iterable[PaymentRow]) -> Decimal:
    """What is left to pay: the amount less what the invoice's payments brought in and kept
    (net of refunds), once issued; nothing on a draft or a void invoice. The invoice's
    receivable holds the same (`reconcile` checks it, with `amount_due_column`)."""
    if invoice.status not in ISSUED:
        return Decimal("0.00")
    kept = (p.amount - p.refunded_amount for p in payments if p.status in SETTLED)
    return invoice.amount - sum(kept, Decimal("0.00"))


async def invoice_payments(session: AsyncSession, invoice_id: int) -> list[PaymentRow]:
    """The invoice's payments, read as the dataloader reads them: what `amount_due` takes.
    The caller holds the invoice's lock, which every payment of it waits for."""
    by_invoice = await payments_by_invoice_ids(writer(session), [invoice_id])
    return by_invoice[invoice_id]


# `amount_due` in SQL, for the checks that read every invoice at once.


def paid_per_invoice() -> Subquery:
    """(invoice_id, paid): what each invoice's payments brought in and kept."""
    # SQLite adds numerics as binary floats: round the sum to cents.
    paid = func.round(func.sum(payments.c.amount - payments.c.refunded_amount), 2)
    return (
        select(payments.c.invoice_id, paid.label("paid"))
        .where(payments.c.status.in_(SETTLED))
        .group_by(payments.c.invoice_id)
        .subquery()
    )


def amount_due_column(paid: Subquery) -> ColumnElement[Decimal]:
    """`amount_due` of each row of `invoices` outer-joined to `paid_per_invoice()`."""
    return case(
        (invoices.c.status.in_(ISSUED), invoices.c.amount - func.coalesce(paid.c.paid, Decimal(0))),
        else_=Decimal(0),
    )


async def mark_paid(session: AsyncSession, paid: Sequence[InvoiceRow], now: datetime) -> None:
    """The invoices' payments now cover them: record them paid, and say so (`invoice.paid`
    each), in one statement however many (a payment pays one, the invoice run a batch).
    Every payment that pays an invoice off comes here, whatever its path: the subscriptions
    the debt suspended resume here too (domains/billing/suspension.py), in its transaction.
    The caller holds the invoices' customers' locks."""
    if not paid:
        return
    await writer(session).execute(_MARK_PAID, invoice_ids=[invoice.id for invoice in paid])
    await resume_cleared(session, [invoice.customer_id for invoice in paid], now)
    for invoice in paid:
        await events.invoice_paid(
            session,
            invoice_id=invoice.id,
            customer_id=invoice.customer_id,
            number=invoice.number,
            amount=invoice.amount,
            currency=invoice.currency,
        )


def check_payable(invoice: InvoiceRow, customer: CustomerRow) -> None:
    """Only an issued or overdue invoice takes payments, in its customer's currency."""
    if invoice.status not in PAYABLE or invoice.currency != customer.currency:
        raise InvoiceNotPayable(f"invoice {invoice.number} is {invoice.status}, not payable")


def check_amount(amount: Decimal, due: Decimal, currency: str) -> None:
    """A payment pays some of what is due, never more."""
    if amount <= 0 or amount > due:
        raise InvalidAmount(f"the amount exceeds what is due ({due} {currency})")


def valid_amount(amount: Decimal) -> bool:
    """Positive, whole cents, and within the money columns (numeric(12,2)): the bound is
    checked first, as quantizing a huge amount ("1e26") overflows Decimal's precision."""
    return amount.is_finite() and 0 < amount < MAX_MONEY and amount == amount.quantize(CENT)
