"""Provider webhooks: their signature, and settling the payment they report, exactly once.

A webhook carries `Webhook-Timestamp` (Unix seconds) and `Webhook-Signature: v1=<hex>`,
HMAC-SHA256 with the shared secret over `<timestamp>.<raw body>`; the receiver compares in
constant time and refuses timestamps outside its tolerance (replays). The body, in the
shape of YooKassa's notifications:

    {"id": "<event id>", "type": "payment.succeeded" | "payment.canceled",
     "object": {"id": "<provider payment id>", "status": "...",
                "amount": {"value": "100.00", "currency": "RUB"}}}

`settle` handles one event in one transaction: under the customer's lock (taken first, as
every money action takes it) it records `(provider, event id)`, so a redelivery (even a
concurrent one, which waits on that lock) finds it and changes nothing; then it moves the
pending payment to succeeded (with its ledger movement and events) or failed (with none).
A payment already settled is left alone. A card payment whose invoice was meanwhile paid
otherwise (or voided) is kept as a top-up: the money the provider captured lands on the
balance instead of overpaying the invoice. Money that lands on the balance repays an open
promised payment first (domains/billing/promised_payment.py); a payment that pays its
invoice off resumes what the debt suspended (settlement.mark_paid).
"""

import hashlib
import hmac
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from domains.billing import events
from domains.billing.ledger import Entry, post_movement
from domains.billing.models import (
    EntrySide,
    LedgerAccount,
    Payment,
    PaymentStatus,
    ProviderEvent,
)
from domains.billing.promised_payment import repay_promised_credit
from domains.billing.settlement import (
    PAYABLE,
    PaymentOwner,
    amount_due,
    invoice_payments,
    lock_customer,
    lock_invoice,
    lock_payment,
    mark_paid,
)
from domains.clock import utcnow
from domains.database import Database
from domains.errors import InvalidInput
from domains.reads import Read, select_rows
from domains.writes import Write, writer

payments = Payment.__table__
provider_events = ProviderEvent.__table__

_OWNER = Read(
    PaymentOwner,
    select_rows(PaymentOwner, payments).where(
        payments.c.provider == bindparam("provider"),
        payments.c.provider_payment_id == bindparam("provider_payment_id"),
    ),
)
# Once per provider event: a redelivered one inserts nothing.
_RECORD_EVENT = Write(
    postgresql.insert(provider_events)
    .values(
        {name: bindparam(name) for name in ("provider", "event_id", "payment_id", "received_at")}
    )
    .on_conflict_do_nothing(index_elements=[provider_events.c.provider, provider_events.c.event_id])
)
_SET_STATUS = Write(
    update(payments)
    .where(payments.c.id == bindparam("of_payment"))
    .values(status=bindparam("status"))
)
# Paid meanwhile by other means: the payment no longer pays the invoice.
_UNLINK_INVOICE = Write(
    update(payments).where(payments.c.id == bindparam("of_payment")).values(invoice_id=None)
)

SUCCEEDED = "payment.succeeded"
CANCELED = "payment.canceled"


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def signature_valid(
    secret: bytes,
    timestamp: str,
    signed: str,
    body: bytes,
    *,
    now: datetime,
    tolerance: timedelta,
) -> bool:
    """The signature matches (constant-time) and the timestamp is within the tolerance."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs(now.timestamp() - sent) > tolerance.total_seconds():
        return False
    return hmac.compare_digest(signature(secret, timestamp, body).encode(), signed.encode())


@dataclass(frozen=True, slots=True)
class ProviderNotice:
    event_id: str
    type: str
    provider_payment_id: str
    amount: Decimal
    currency: str


def parse_notice(body: Any) -> ProviderNotice:
    try:
        notice = ProviderNotice(
            event_id=str(body["id"]),
            type=str(body["type"]),
            provider_payment_id=str(body["object"]["id"]),
            amount=Decimal(str(body["object"]["amount"]["value"])),
            currency=str(body["object"]["amount"]["currency"]),
        )
    except (KeyError, TypeError, InvalidOperation):
        raise InvalidInput("not a payment notification") from None
    if notice.type not in (SUCCEEDED, CANCELED):
        raise InvalidInput(f"unknown event type {notice.type!r}")
    return notice


async def settle(db: Database, provider: str, notice: ProviderNotice) -> bool:
    """Applies the notice once; False when the event was already handled (a redelivery)."""
    async with db.transaction() as session:
        now = utcnow()
        found = await writer(session).fetch(
            _OWNER, provider=provider, provider_payment_id=notice.provider_payment_id
        )
        owner = found[0] if found else None
        if owner is None:
            raise InvalidInput("no payment has this provider payment id")
        # The customer first, as every money action: the event row's foreign key
        # share-locks the payment, and recorded before this lock, a second event's settle
        # (a webhook and the sweep) would hold the customer and wait for the payment.
        customer = await lock_customer(session, owner.customer_id)
        if not await _record_event(session, provider, notice.event_id, owner.id, now):
            return False
        invoice = (
            None if owner.invoice_id is None else await lock_invoice(session, owner.invoice_id)
        )
        payment = await lock_payment(session, owner.id)
        if payment.status is not PaymentStatus.PENDING:
            return True
        if notice.type == CANCELED:
            await _set_status(session, payment.id, PaymentStatus.FAILED)
            return True
        if notice.amount != payment.amount or notice.currency != payment.currency:
            raise InvalidInput("the notification's amount differs from the payment's")
        # Nothing is due on an invoice no longer payable.
        due = Decimal(0)
        if invoice is not None and invoice.status in PAYABLE:
            due = amount_due(invoice, await invoice_payments(session, invoice.id))
        if invoice is not None and payment.amount > due:
            # Paid meanwhile by other means: the captured money lands on the balance.
            await writer(session).execute(_UNLINK_INVOICE, of_payment=payment.id)
            invoice = None
        await _set_status(session, payment.id, PaymentStatus.SUCCEEDED)
        common = {
            "amount": payment.amount,
            "currency": payment.currency,
            "customer_id": payment.customer_id,
            "payment_id": payment.id,
        }
        clearing = Entry(LedgerAccount.PROVIDER_CLEARING, EntrySide.DEBIT, **common)
        if invoice is None:
            credit = Entry(LedgerAccount.CUSTOMER_BALANCE, EntrySide.CREDIT, **common)
        else:
            credit = Entry(
                LedgerAccount.RECEIVABLE, EntrySide.CREDIT, invoice_id=invoice.id, **common
            )
        await post_movement(session, [clearing, credit], now)
        await events.payment_created(
            session,
            payment_id=payment.id,
            invoice_id=None if invoice is None else invoice.id,
            customer_id=payment.customer_id,
            amount=payment.amount,
            currency=payment.currency,
            method=payment.method.value,
            status=PaymentStatus.SUCCEEDED.value,
        )
        if invoice is None:
            await events.balance_changed(
                session,
                customer_id=payment.customer_id,
                balance=customer.balance + payment.amount,
                delta=payment.amount,
                currency=payment.currency,
                reason="top_up",
            )
            # Money on the balance repays a promised payment first.
            topped_up = replace(customer, balance=customer.balance + payment.amount)
            await repay_promised_credit(session, topped_up, payment.amount, now)
        elif payment.amount == due:
            await mark_paid(session, [invoice], now)
        return True


async def _record_event(
    session: AsyncSession, provider: str, event_id: str, payment_id: int, now: datetime
) -> bool:
    recorded = await writer(session).execute(
        _RECORD_EVENT, provider=provider, event_id=event_id, payment_id=payment_id, received_at=now
    )
    return recorded > 0


async def _set_status(session: AsyncSession, payment_id: int, status: PaymentStatus) -> None:
    await writer(session).execute(_SET_STATUS, of_payment=payment_id, status=status)
