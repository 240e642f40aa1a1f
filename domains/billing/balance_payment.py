"""A payment from the balance: what payInvoice and the invoice run's autopay both write.

Either one holds the customer's lock, then the invoice's (domains.billing.settlement),
checks the payment (`settlement.check_payable`, `check_amount`, `check_funds` here) and
writes its row (`payment_start.payment_values`), then what is defined here: the movement
from the customer's balance to the invoice's receivable, and the events `payment.created`
and `balance.changed`; a payment of all that is due then marks the invoice paid
(`settlement.mark_paid`). payInvoice writes one payment; the run a batch at once.
"""

from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from domains.billing import events
from domains.billing.errors import InsufficientFunds
from domains.billing.invoice import InvoiceRow
from domains.billing.ledger import Entry
from domains.billing.models import EntrySide, LedgerAccount, PaymentMethod, PaymentStatus


def check_funds(balance: Decimal, amount: Decimal) -> None:
    """A balance pays what it holds, never more."""
    if balance < amount:
        raise InsufficientFunds(f"the balance ({balance}) does not cover {amount}")


def balance_movement(invoice: InvoiceRow, payment_id: int, amount: Decimal) -> list[Entry]:
    """The balance pays the invoice's receivable."""
    common = {
        "amount": amount,
        "currency": invoice.currency,
        "customer_id": invoice.customer_id,
        "payment_id": payment_id,
    }
    return [
        Entry(LedgerAccount.CUSTOMER_BALANCE, EntrySide.DEBIT, **common),
        Entry(LedgerAccount.RECEIVABLE, EntrySide.CREDIT, invoice_id=invoice.id, **common),
    ]


async def announce_balance_payment(
    session: AsyncSession, invoice: InvoiceRow, payment_id: int, amount: Decimal, balance: Decimal
) -> None:
    """`payment.created`, then `balance.changed` to `balance`, what is left after it."""
    await events.payment_created(
        session,
        payment_id=payment_id,
        invoice_id=invoice.id,
        customer_id=invoice.customer_id,
        amount=amount,
        currency=invoice.currency,
        method=PaymentMethod.BALANCE.value,
        status=PaymentStatus.SUCCEEDED.value,
    )
    await events.balance_changed(
        session,
        customer_id=invoice.customer_id,
        balance=balance,
        delta=-amount,
        currency=invoice.currency,
        reason="payment",
    )
