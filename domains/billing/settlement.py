"""What money movements share: row locks in one order, and how much of an invoice is paid.

Every action that moves a customer's money locks the customer row, then the invoice row,
then the payment row (`SELECT ... FOR UPDATE`; SQLite's single writer serialises
instead), always in that order, so two actions never wait on each other crosswise.
"""

from datetime import date
from decimal import Decimal

from sqlalchemy import Row, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domains.billing import events
from domains.billing.models import Invoice, InvoiceStatus, Payment, PaymentStatus
from domains.customers.models import Customer

customers = Customer.__table__
invoices = Invoice.__table__
payments = Payment.__table__

# Invoices that take payments (not draft, paid or void).
PAYABLE = (InvoiceStatus.ISSUED, InvoiceStatus.OVERDUE)
# Payments whose money arrived; a refunded one counts with what was not given back.
SETTLED = (PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED)
CENT = Decimal("0.01")


async def lock_customer(session: AsyncSession, customer_id: int) -> Row | None:
    stmt = select(customers).where(customers.c.id == customer_id).with_for_update()
    return (await session.execute(stmt)).first()


async def lock_invoice(session: AsyncSession, invoice_id: int) -> Row | None:
    stmt = select(invoices).where(invoices.c.id == invoice_id).with_for_update()
    return (await session.execute(stmt)).first()


async def lock_payment(session: AsyncSession, payment_id: int) -> Row:
    """The payment, which exists: the caller found it before locking its customer."""
    stmt = select(payments).where(payments.c.id == payment_id).with_for_update()
    return (await session.execute(stmt)).one()


async def net_paid(session: AsyncSession, invoice_id: int) -> Decimal:
    """What the invoice's payments brought in, less what was refunded."""
    stmt = select(
        func.coalesce(func.sum(payments.c.amount - payments.c.refunded_amount), Decimal(0))
    ).where(payments.c.invoice_id == invoice_id, payments.c.status.in_(SETTLED))
    return Decimal((await session.execute(stmt)).scalar_one()).quantize(CENT)


async def mark_paid(session: AsyncSession, invoice: Row) -> None:
    """The invoice's payments now cover it: record it paid, and say so (`invoice.paid`)."""
    await session.execute(
        update(invoices).where(invoices.c.id == invoice.id).values(status=InvoiceStatus.PAID)
    )
    await events.invoice_paid(
        session,
        invoice_id=invoice.id,
        customer_id=invoice.customer_id,
        number=invoice.number,
        amount=invoice.amount,
        currency=invoice.currency,
    )


def unpaid_status(due_date: date | None, today: date) -> InvoiceStatus:
    """The status of an issued invoice that its payments do not cover."""
    if due_date is not None and due_date < today:
        return InvoiceStatus.OVERDUE
    return InvoiceStatus.ISSUED


def valid_amount(amount: Decimal) -> bool:
    return amount.is_finite() and amount > 0 and amount == amount.quantize(CENT)
