"""Card money through a payment provider: topping up the balance, and starting the
provider's payment for a card payment (a top-up, or an invoice paid by CARD).

Starting is two steps around the provider call, so no database transaction waits on the
network: the first transaction claims the idempotency key and writes the payment
`pending` with no ledger entry; then the provider is asked to create its payment (its
`Idempotence-Key` is our payment id, so asking again returns the same one) and a second
transaction keeps its id and confirmation URL. A retry with the same key that finds no
confirmation URL (the first request died between the steps) asks the provider again. The
money moves only when the provider's signed webhook reports success
(`domains.billing.webhook`).
"""

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import insert, select, update

from domains.billing.errors import InvalidAmount, PaymentMethodUnavailable
from domains.billing.idempotency import (
    bind_key,
    check_key,
    claim_key,
    replayed_payment,
    request_fingerprint,
)
from domains.billing.models import Payment, PaymentMethod, PaymentStatus
from domains.billing.provider import PaymentProvider
from domains.billing.settlement import lock_customer, valid_amount
from domains.clock import utcnow
from domains.database import Database
from domains.errors import Forbidden, NotFound
from domains.identity.viewer import Viewer

payments = Payment.__table__

MAX_TOP_UP = Decimal("1000000.00")


@dataclass(frozen=True, slots=True)
class Acquiring:
    """The provider card payments go through, and where it sends the payer back to."""

    provider: PaymentProvider
    return_url: str


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


def top_up_fingerprint(amount: Decimal) -> str:
    return request_fingerprint({"amount": str(amount.quantize(Decimal("0.01"))), "kind": "top_up"})


async def top_up_balance(
    db: Database,
    acquiring: Acquiring | None,
    viewer: Viewer,
    *,
    amount: Decimal,
    idempotency_key: str,
) -> TopUpResult:
    customer_id = viewer.customer_id
    if customer_id is None:
        raise Forbidden("only a customer tops up their balance")
    check_key(idempotency_key)
    if not valid_amount(amount) or amount > MAX_TOP_UP:
        raise InvalidAmount(f"the amount is positive, at most {MAX_TOP_UP}, with two decimals")
    acquiring = require_acquiring(acquiring)
    request = top_up_fingerprint(amount)
    async with db.transaction() as session:
        now = utcnow()
        customer = await lock_customer(session, customer_id)
        if customer is None:
            raise NotFound("customer")
        if await claim_key(session, customer_id, idempotency_key, request, now):
            replayed = False
            payment_id = (
                await session.execute(
                    insert(payments)
                    .values(
                        invoice_id=None,
                        customer_id=customer_id,
                        amount=amount,
                        currency=customer.currency,
                        method=PaymentMethod.CARD,
                        status=PaymentStatus.PENDING,
                        refunded_amount=Decimal("0.00"),
                        created_at=now,
                        provider=acquiring.provider.name,
                    )
                    .returning(payments.c.id)
                )
            ).scalar_one()
            await bind_key(session, customer_id, idempotency_key, payment_id)
        else:
            replayed = True
            payment_id = await replayed_payment(
                session,
                customer_id,
                idempotency_key,
                request,
                "this idempotency key was used for another request",
            )
    url = await start_card_payment(db, acquiring, payment_id, "Balance top-up")
    return TopUpResult(payment_id, customer_id, url, replayed)


async def start_card_payment(
    db: Database, acquiring: Acquiring, payment_id: int, description: str
) -> str:
    """The payment's confirmation URL, asking the provider for it if it has none yet."""
    async with db.read() as conn:
        payment = (await conn.execute(select(payments).where(payments.c.id == payment_id))).one()
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
