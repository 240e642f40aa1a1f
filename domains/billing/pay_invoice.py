"""Paying an invoice, from the balance or by card, once per idempotency key.

One database transaction does everything (`domains.billing.payment_start`): it locks the
customer, claims the idempotency key, locks the invoice, checks, writes the payment, its
ledger movement, the invoice status and the outbox events. A refused request rolls back
with its key, so the key can be used again; a retry with the key answers with the first
request's payment.

A CARD payment is written `pending` with no ledger entry, then started with the payment
provider after the commit (`domains.billing.card`); the provider's webhook settles it and
pays the invoice (`domains.billing.webhook`).
"""

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession

from domains.billing.balance_payment import (
    announce_balance_payment,
    balance_movement,
    check_funds,
)
from domains.billing.card import Acquiring, require_acquiring, start_card_payment
from domains.billing.errors import InvalidAmount
from domains.billing.invoice import InvoiceRow
from domains.billing.ledger import post_movement
from domains.billing.models import InvoiceStatus, PaymentMethod
from domains.billing.payment import PaymentRow
from domains.billing.payment_start import Charge, Payer, Settled, start_payment
from domains.billing.settlement import (
    amount_due,
    check_amount,
    check_payable,
    invoice_payments,
    lock_invoice,
    mark_paid,
    valid_amount,
)
from domains.customers.customer import CustomerRow
from domains.database import Database
from domains.errors import NotFound
from domains.identity.viewer import Viewer


@dataclass(frozen=True, slots=True)
class PaymentResult:
    payment_id: int
    invoice_id: int
    customer_id: int
    # True when the key had already paid: this answer repeats the first one.
    replayed: bool
    # A balance payment's rows as it committed them (the answer needs no read); None when
    # replayed or by card, whose rows change after this transaction.
    payment: PaymentRow | None = None
    invoice: InvoiceRow | None = None
    customer: CustomerRow | None = None


async def pay_invoice(
    db: Database,
    viewer: Viewer,
    *,
    invoice_id: int,
    method: PaymentMethod,
    amount: Decimal | None,
    idempotency_key: str,
    acquiring: Acquiring | None = None,
) -> PaymentResult:
    payer = Payer.of(viewer, idempotency_key, "only a customer pays their invoices")
    card = require_acquiring(acquiring) if method is PaymentMethod.CARD else None
    if amount is not None and not valid_amount(amount):
        raise InvalidAmount("the amount is positive, with at most two decimals")
    started = await start_payment(
        db,
        payer,
        # A retry must ask for exactly the same payment (no amount: what was due then).
        request={"amount": amount, "invoice_id": invoice_id, "method": method},
        rules=partial(_charge, invoice_id=invoice_id, amount=amount, card=card),
    )
    if card is not None:
        await start_card_payment(db, card, started.payment_id, f"Invoice {invoice_id}")
    result = PaymentResult(started.payment_id, invoice_id, payer.customer_id, started.replayed)
    if started.settled is None:
        return result
    return replace(
        result,
        payment=started.payment,
        invoice=started.settled.invoice,
        customer=started.settled.customer,
    )


async def _charge(
    session: AsyncSession,
    customer: CustomerRow,
    now: datetime,
    *,
    invoice_id: int,
    amount: Decimal | None,
    card: Acquiring | None,
) -> Charge:
    # After the customer and the key: the documented order (domains.billing.settlement).
    invoice = await lock_invoice(session, invoice_id)
    if invoice is None or invoice.customer_id != customer.id:
        raise NotFound("invoice")
    check_payable(invoice, customer)
    due = amount_due(invoice, await invoice_payments(session, invoice_id))
    if amount is None:
        amount = due
    check_amount(amount, due, invoice.currency)
    if card is not None:
        # No money moves yet: the provider's webhook settles it (domains.billing.webhook).
        return Charge(
            amount,
            invoice.currency,
            PaymentMethod.CARD,
            invoice_id=invoice_id,
            provider=card.provider.name,
        )
    check_funds(customer.balance, amount)
    return Charge(
        amount,
        invoice.currency,
        PaymentMethod.BALANCE,
        invoice_id=invoice_id,
        settle=partial(
            _settle, customer=customer, invoice=invoice, amount=amount, due=due, now=now
        ),
    )


async def _settle(
    session: AsyncSession,
    payment_id: int,
    *,
    customer: CustomerRow,
    invoice: InvoiceRow,
    amount: Decimal,
    due: Decimal,
    now: datetime,
) -> Settled:
    """The balance pays the invoice's receivable; a payment of all that is due pays it."""
    await post_movement(session, balance_movement(invoice, payment_id, amount), now)
    balance = customer.balance - amount
    await announce_balance_payment(session, invoice, payment_id, amount, balance)
    if amount == due:
        await mark_paid(session, [invoice], now)
        invoice = replace(invoice, status=InvoiceStatus.PAID)
    return Settled(replace(customer, balance=balance), invoice)
