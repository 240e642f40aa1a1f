"""Paying an invoice from the customer's account balance, once per idempotency key.

One database transaction does everything: it locks the customer, claims the idempotency
key, locks the invoice, checks, writes the payment, its ledger movement, the invoice
status and the outbox events. A refused request rolls back with its key, so the key can
be used again. Two requests with one key: the second one waits for the customer
row lock (and, were it past it, the INSERT of the key would wait on the first one's
uncommitted key; SQLite's single writer serialises), then finds the key and answers with
the first one's payment.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import Row, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from domains.billing import events
from domains.billing.errors import (
    IdempotencyKeyReused,
    InsufficientFunds,
    InvalidAmount,
    InvoiceNotPayable,
    PaymentMethodUnavailable,
)
from domains.billing.ledger import Entry, post_movement
from domains.billing.models import (
    EntrySide,
    IdempotencyKey,
    InvoiceStatus,
    LedgerAccount,
    Payment,
    PaymentMethod,
    PaymentStatus,
)
from domains.billing.settlement import (
    invoices,
    lock_customer,
    lock_invoice,
    net_paid,
    valid_amount,
)
from domains.clock import utcnow
from domains.database import Database
from domains.errors import Forbidden, InvalidInput, NotFound
from domains.identity.viewer import Viewer

keys = IdempotencyKey.__table__
payments = Payment.__table__

KEY_TTL = timedelta(hours=24)
MAX_KEY_LENGTH = 255
PAYABLE = (InvoiceStatus.ISSUED, InvoiceStatus.OVERDUE)


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
    encoded = json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()


async def pay_invoice(
    db: Database,
    viewer: Viewer,
    *,
    invoice_id: int,
    method: PaymentMethod,
    amount: Decimal | None,
    idempotency_key: str,
) -> PaymentResult:
    customer_id = viewer.customer_id
    if customer_id is None:
        raise Forbidden("only a customer pays their invoices")
    if not idempotency_key or len(idempotency_key) > MAX_KEY_LENGTH:
        raise InvalidInput(f"an idempotency key is 1 to {MAX_KEY_LENGTH} characters")
    if method is not PaymentMethod.BALANCE:
        raise PaymentMethodUnavailable("card payments are not available yet; pay from balance")
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
        claimed = await _claim_key(session, customer_id, idempotency_key, request, now)
        if not claimed:
            return await _replay(session, customer_id, idempotency_key, request)
        payment_id = await _pay(session, customer, invoice_id, method, amount, now)
        await session.execute(
            update(keys)
            .where(keys.c.customer_id == customer_id, keys.c.key == idempotency_key)
            .values(payment_id=payment_id)
        )
        return PaymentResult(payment_id, invoice_id, customer_id, replayed=False)


async def _claim_key(
    session: AsyncSession, customer_id: int, key: str, request: str, now: datetime
) -> bool:
    """Inserts the key, or takes over an expired one; False when a live one exists."""
    dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
    values = {
        "customer_id": customer_id,
        "key": key,
        "fingerprint": request,
        "payment_id": None,
        "created_at": now,
        "expires_at": now + KEY_TTL,
    }
    stmt = dialect.insert(keys).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[keys.c.customer_id, keys.c.key],
        set_={name: stmt.excluded[name] for name in values if name not in ("customer_id", "key")},
        where=keys.c.expires_at <= now,
    ).returning(keys.c.id)
    return (await session.execute(stmt)).first() is not None


async def _replay(session: AsyncSession, customer_id: int, key: str, request: str) -> PaymentResult:
    stmt = select(keys.c.fingerprint, keys.c.payment_id, payments.c.invoice_id).join(
        payments, payments.c.id == keys.c.payment_id
    )
    row = (
        await session.execute(stmt.where(keys.c.customer_id == customer_id, keys.c.key == key))
    ).one()
    if row.fingerprint != request:
        raise IdempotencyKeyReused("this idempotency key was used for a different payment")
    return PaymentResult(row.payment_id, row.invoice_id, customer_id, replayed=True)


async def _pay(
    session: AsyncSession,
    customer: Row,
    invoice_id: int,
    method: PaymentMethod,
    amount: Decimal | None,
    now: datetime,
) -> int:
    customer_id = customer.id
    invoice = await lock_invoice(session, invoice_id)
    if invoice is None or invoice.customer_id != customer_id:
        raise NotFound("invoice")
    if invoice.status not in PAYABLE or invoice.currency != customer.currency:
        raise InvoiceNotPayable(f"invoice {invoice.number} is {invoice.status}, not payable")
    due = invoice.amount - await net_paid(session, invoice_id)
    if amount is None:
        amount = due
    if amount <= 0 or amount > due:
        raise InvalidAmount(f"the amount exceeds what is due ({due} {invoice.currency})")
    if customer.balance < amount:
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
                status=PaymentStatus.SUCCEEDED,
                refunded_amount=Decimal("0.00"),
                created_at=now,
            )
            .returning(payments.c.id)
        )
    ).scalar_one()
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
        await session.execute(
            update(invoices).where(invoices.c.id == invoice_id).values(status=InvoiceStatus.PAID)
        )
        await events.invoice_paid(
            session,
            invoice_id=invoice_id,
            customer_id=customer_id,
            number=invoice.number,
            amount=invoice.amount,
            currency=invoice.currency,
        )
    return payment_id
