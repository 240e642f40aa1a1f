"""Card money through a payment provider: topping up the balance, and starting the
provider's payment for a card payment (a top-up, or an invoice paid by CARD).

Starting is two steps around the provider call, so no database transaction waits on the
network: the first transaction claims the idempotency key and writes the payment `pending`
with no ledger entry (`domains.billing.payment_start`); then the provider is asked to
create its payment (its `Idempotence-Key` is our payment id, so asking again returns the
same one) and a second transaction keeps its id and confirmation URL. A retry with the
same key that finds no confirmation URL (the first request died between the steps) asks
the provider again. The money moves only when the provider's signed webhook reports
success (`domains.billing.webhook`).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from domains.billing.errors import InvalidAmount, PaymentMethodUnavailable
from domains.billing.models import Payment, PaymentMethod
from domains.billing.payment import payments_by_ids
from domains.billing.payment_start import Charge, Payer, start_payment
from domains.billing.provider import PaymentProvider
from domains.billing.settlement import valid_amount
from domains.customers.customer import CustomerRow
from domains.database import Database
from domains.identity.viewer import Viewer

payments = Payment.__table__

MAX_TOP_UP = Decimal("1000000.00")


@dataclass(frozen=True, slots=True)
class Acquiring:
    """The provider card payments go through, where it sends the payer back to, and how
    its notifications of results are authenticated (None: it sends none here)."""

    provider: PaymentProvider
    return_url: str
    webhook_secret: bytes | None = None
    webhook_tolerance: timedelta = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class TopUpResult:
    payment_id: int
    customer_id: int
    confirmation_url: str
    replayed: bool


def require_acquiring(acquiring: Acquiring | None) -> Acquiring:
    if acquiring is None:
        raise PaymentMethodUnavailable("card payments are not configured")
    return acquiring


async def top_up_balance(
    db: Database,
    acquiring: Acquiring | None,
    viewer: Viewer,
    *,
    amount: Decimal,
    idempotency_key: str,
) -> TopUpResult:
    payer = Payer.of(viewer, idempotency_key, "only a customer tops up their balance")
    if not valid_amount(amount) or amount > MAX_TOP_UP:
        raise InvalidAmount(f"the amount is positive, at most {MAX_TOP_UP}, with two decimals")
    card = require_acquiring(acquiring)

    async def top_up(_session: AsyncSession, customer: CustomerRow, _now: datetime) -> Charge:
        # No money moves yet: the provider's webhook credits the balance.
        return Charge(amount, customer.currency, PaymentMethod.CARD, provider=card.provider.name)

    started = await start_payment(
        db, payer, request={"amount": amount, "kind": "top_up"}, rules=top_up
    )
    url = await start_card_payment(db, card, started.payment_id, "Balance top-up")
    return TopUpResult(started.payment_id, payer.customer_id, url, started.replayed)


async def start_card_payment(
    db: Database, acquiring: Acquiring, payment_id: int, description: str
) -> str:
    """The payment's confirmation URL, asking the provider for it if it has none yet."""
    async with db.read() as reader:
        payment = (await payments_by_ids(reader, [payment_id]))[payment_id]
    if payment.confirmation_url is not None:
        return payment.confirmation_url
    created = await acquiring.provider.create_payment(
        amount=payment.amount,
        currency=payment.currency,
        idempotency_key=f"kabinet-payment-{payment_id}",
        description=description,
        return_url=acquiring.return_url,
    )
    async with db.transaction() as session:
        await session.execute(
            update(payments)
            .where(payments.c.id == payment_id)
            .values(
                provider_payment_id=created.provider_payment_id,
                confirmation_url=created.confirmation_url,
            )
        )
    return created.confirmation_url
