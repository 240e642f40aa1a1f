"""Paying an invoice, from the balance or by card, once per idempotency key.

One database transaction does everything: it locks the customer, claims the idempotency
key, locks the invoice, checks, writes the payment, its ledger movement, the invoice
status and the outbox events. A refused request rolls back with its key, so the key can
be used again. Two requests with one key: the second one waits for the customer
row lock (and, were it past it, the INSERT of the key would wait on the first one's
uncommitted key; SQLite's single writer serialises), then finds the key and answers with
the first one's payment.

A CARD payment is written `pending` with no ledger entry, then started with the payment
provider after the commit (`domains.billing.card`); the provider's webhook settles it and
pays the invoice (`domains.billing.webhook`).
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Row, insert
from sqlalchemy.ext.asyncio import AsyncSession

from domains.billing import events
from domains.billing.card import Acquiring, require_acquiring, start_card_payment
from domains.billing.errors import InsufficientFunds, InvalidAmount, InvoiceNotPayable
from domains.billing.idempotency import (
    bind_key,
    check_key,
    claim_key,
    replayed_payment,
    request_fingerprint,
)
from domains.billing.ledger import Entry, post_movement
from domains.billing.models import (
    EntrySide,
    LedgerAccount,
    Payment,
    PaymentMethod,
    PaymentStatus,
)
from domains.billing.settlement import (
    PAYABLE,
    amount_due,
    invoice_payments,
    lock_customer,
    lock_invoice,
    mark_paid,
    valid_amount,
)
from domains.clock import utcnow
from domains.database import Database
from domains.errors import Forbidden, NotFound
from domains.identity.viewer import Viewer

payments = Payment.__table__


@dataclass(frozen=True, slots=True)
class PaymentResult:
    payment_id: int
    invoice_id: int
    customer_id: int
    # True when the key had already paid: this answer repeats the first one.
    replayed: bool


def fingerprint(invoice_id: int, method: PaymentMethod, amount: Decimal | None) -> str:
    """sha256 of the canonical parameters: a retry must ask for exactly the same payment."""
    canonical = {
        "amount": None if amount is None else str(amount.quantize(Decimal("0.01"))),
        "invoice_id": invoice_id,
        "method": method.value,
    }
    return request_fingerprint(canonical)


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
    customer_id = viewer.customer_id
    if customer_id is None:
        raise Forbidden("only a customer pays their invoices")
    check_key(idempotency_key)
    card = require_acquiring(acquiring) if method is PaymentMethod.CARD else None
    if amount is not None and not valid_amount(amount):
        raise InvalidAmount("the amount is positive, with at most two decimals")
    request = fingerprint(invoice_id, method, amount)
    async with db.transaction() as session:
        now = utcnow()
        # The customer row first: the key's foreign key would otherwise share-lock it
        # before this transaction asks to update it, and two payments would deadlock.
        customer = await lock_customer(session, customer_id)
        if customer is None:
            raise NotFound("invoice")
        claimed = await claim_key(session, customer_id, idempotency_key, request, now)
        if not claimed:
            # A matching fingerprint means the same invoice.
            payment_id = await replayed_payment(
                session,
                customer_id,
                idempotency_key,
                request,
                "this idempotency key was used for a different payment",
            )
        else:
            payment_id = await _pay(session, customer, invoice_id, method, amount, now, card)
            await bind_key(session, customer_id, idempotency_key, payment_id)
        result = PaymentResult(payment_id, invoice_id, customer_id, replayed=not claimed)
    if card is not None:
        await start_card_payment(db, card, result.payment_id, f"Invoice {invoice_id}")
    return result


async def _pay(
    session: AsyncSession,
    customer: Row,
    invoice_id: int,
    method: PaymentMethod,
    amount: Decimal | None,
    now: datetime,
    card: Acquiring | None,
) -> int:
    customer_id = customer.id
    invoice = await lock_invoice(session, invoice_id)
    if invoice is None or invoice.customer_id != customer_id:
        raise NotFound("invoice")
    if invoice.status not in PAYABLE or invoice.currency != customer.currency:
        raise InvoiceNotPayable(f"invoice {invoice.number} is {invoice.status}, not payable")
    due = amount_due(invoice, await invoice_payments(session, invoice_id))
    if amount is None:
        amount = due
    if amount <= 0 or amount > due:
        raise InvalidAmount(f"the amount exceeds what is due ({due} {invoice.currency})")
    if card is None and customer.balance < amount:
        raise InsufficientFunds(f"the balance ({customer.balance}) does not cover {amount}")

    payment_id = (
        await session.execute(
            insert(payments)
            .values(
                invoice_id=invoice_id,
                customer_id=customer_id,
                amount=amount,
                currency=invoice.currency,
                method=method,
                status=PaymentStatus.SUCCEEDED if card is None else PaymentStatus.PENDING,
                refunded_amount=Decimal("0.00"),
                created_at=now,
                provider=None if card is None else card.provider.name,
            )
            .returning(payments.c.id)
        )
    ).scalar_one()
    if card is not None:
        # No money moved yet: the provider's webhook settles it (domains.billing.webhook).
        return payment_id
    common = {"amount": amount, "currency": invoice.currency, "customer_id": customer_id}
    await post_movement(
        session,
        [
            Entry(LedgerAccount.CUSTOMER_BALANCE, EntrySide.DEBIT, payment_id=payment_id, **common),
            Entry(
                LedgerAccount.RECEIVABLE,
                EntrySide.CREDIT,
                invoice_id=invoice_id,
                payment_id=payment_id,
                **common,
            ),
        ],
        now,
    )
    await events.payment_created(
        session,
        payment_id=payment_id,
        invoice_id=invoice_id,
        customer_id=customer_id,
        amount=amount,
        currency=invoice.currency,
        method=method.value,
        status=PaymentStatus.SUCCEEDED.value,
    )
    await events.balance_changed(
        session,
        customer_id=customer_id,
        balance=customer.balance - amount,
        delta=-amount,
        currency=invoice.currency,
        reason="payment",
    )
    if amount == due:
        await mark_paid(session, invoice)
    return payment_id
