"""Starting a payment once per idempotency key: what paying an invoice and topping up share.

One database transaction locks the customer, claims the idempotency key, lets the action
check its own rules (which say what to write, a `Charge`), writes the payment, binds the
key to it and runs the action's effects. A refused request rolls back with its key, so
the key can be used again. Two requests with one key: the second one waits for the
customer row lock (and, were it past it, the INSERT of the key would wait on the first
one's uncommitted key; SQLite's single writer serialises), then finds the key and answers
with the first one's payment.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, insert
from sqlalchemy.ext.asyncio import AsyncSession

from domains.billing.idempotency import (
    bind_key,
    check_key,
    claim_key,
    replayed,
    request_fingerprint,
)
from domains.billing.invoice import InvoiceRow
from domains.billing.models import Payment, PaymentMethod, PaymentStatus
from domains.billing.payment import PaymentRow
from domains.billing.settlement import lock_customer
from domains.clock import utcnow
from domains.customers.customer import CustomerRow
from domains.database import Database
from domains.errors import Forbidden, NotFound
from domains.identity.viewer import Viewer
from domains.reads import row_columns
from domains.writes import Write, writer

payments = Payment.__table__

# What a new payment row holds (`payment_values`): one payment's INSERT, or many at once.
PAYMENT_COLUMNS = (
    "invoice_id",
    "customer_id",
    "amount",
    "currency",
    "method",
    "status",
    "refunded_amount",
    "created_at",
    "provider",
)
_INSERT_PAYMENT = Write(
    insert(payments)
    .values({name: bindparam(name) for name in PAYMENT_COLUMNS})
    .returning(*row_columns(PaymentRow, payments)),
    PaymentRow,
)


@dataclass(frozen=True, slots=True)
class Payer:
    """The customer who pays and the key their request names, checked before the action's
    own arguments: staff learn that they may not pay, not what is wrong with the amount."""

    customer_id: int
    idempotency_key: str

    @classmethod
    def of(cls, viewer: Viewer, idempotency_key: str, forbidden: str) -> "Payer":
        if viewer.customer_id is None:
            raise Forbidden(forbidden)
        check_key(idempotency_key)
        return cls(viewer.customer_id, idempotency_key)


@dataclass(frozen=True, slots=True)
class Charge:
    """The payment an action's rules allow, and what the action does once it is written."""

    amount: Decimal
    currency: str
    method: PaymentMethod
    invoice_id: int | None = None
    # A card payment's acquirer; its webhook moves the money later.
    provider: str | None = None
    # What moves the money now (ledger, events), given the new payment's id.
    settle: Callable[[AsyncSession, int], Awaitable["Settled"]] | None = None


@dataclass(frozen=True, slots=True)
class Settled:
    """The rows a settled payment left, as its transaction commits them."""

    customer: CustomerRow
    invoice: InvoiceRow | None


# The action's rules, run under the customer's lock once the key is claimed.
Rules = Callable[[AsyncSession, CustomerRow, datetime], Awaitable[Charge]]


@dataclass(frozen=True, slots=True)
class StartedPayment:
    payment_id: int
    # True when the key had already paid: this answer repeats the first one.
    replayed: bool
    # A payment settled at once: its row and what it changed, so the answer needs no read.
    payment: PaymentRow | None = None
    settled: Settled | None = None


async def start_payment(
    db: Database, payer: Payer, *, request: dict[str, Any], rules: Rules
) -> StartedPayment:
    """`request` is what names the payment (its canonical parameters): a retry with the
    key must ask for the same, or it is refused."""
    fingerprint = request_fingerprint(request)
    customer_id, key = payer.customer_id, payer.idempotency_key
    async with db.transaction() as session:
        now = utcnow()
        # The customer row first: the key's foreign key would otherwise share-lock it
        # before this transaction asks to update it, and two payments would deadlock.
        customer = await lock_customer(session, customer_id)
        if customer is None:
            raise NotFound("customer")
        if not await claim_key(session, customer_id, key, fingerprint, now):
            # A matching fingerprint means the same request: answer with its payment.
            answer = await replayed(session, customer_id, key, fingerprint)
            return StartedPayment(answer.payment_id, replayed=True)  # type: ignore[arg-type] - a payment key names one
        charge = await rules(session, customer, now)
        payment = await _insert(session, customer_id, charge, now)
        await bind_key(session, customer_id, key, payment_id=payment.id)
        if charge.settle is None:
            return StartedPayment(payment.id, replayed=False)
        settled = await charge.settle(session, payment.id)
    return StartedPayment(payment.id, replayed=False, payment=payment, settled=settled)


async def _insert(
    session: AsyncSession, customer_id: int, charge: Charge, now: datetime
) -> PaymentRow:
    values = payment_values(customer_id, charge, now)
    [payment] = await writer(session).fetch(_INSERT_PAYMENT, **values)
    return payment


def payment_values(customer_id: int, charge: Charge, now: datetime) -> dict[str, Any]:
    """The new payment row of `charge` (its `PAYMENT_COLUMNS`)."""
    balance = charge.method is PaymentMethod.BALANCE
    # A balance payment moves the money at once; a card one waits for the provider.
    status = PaymentStatus.SUCCEEDED if balance else PaymentStatus.PENDING
    return {
        "invoice_id": charge.invoice_id,
        "customer_id": customer_id,
        "amount": charge.amount,
        "currency": charge.currency,
        "method": charge.method,
        "status": status,
        "refunded_amount": Decimal("0.00"),
        "created_at": now,
        "provider": charge.provider,
    }
