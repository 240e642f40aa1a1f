"""Housekeeping that no request does: stale pending card payments, old idempotency keys.

A card payment waits for the provider's webhook; when none came within the pending TTL
(the payer walked away, or the webhook was lost), the provider is asked for the payment's
state: a success is settled exactly as the webhook would have settled it, a cancellation
fails it the same way. One still pending is canceled at the provider first, so a payer
confirming later is refused there instead of paying money our books refuse; then it is
marked failed with no ledger entry, or, if the payer confirmed just before the cancel,
settled as a success. One never created at the provider is marked failed. A provider that
does not answer leaves the payment pending for the next sweep, since it may have captured
the money.

`kabinet billing sweep` runs both once; a worker may call them periodically.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, select, update

from domains.billing.errors import ProviderUnavailable
from domains.billing.idempotency import KEY_TTL
from domains.billing.models import IdempotencyKey, Payment, PaymentMethod, PaymentStatus
from domains.billing.provider import PaymentProvider, ProviderPayment
from domains.billing.webhook import CANCELED, SUCCEEDED, ProviderNotice, settle
from domains.database import Database
from domains.reads import Read

payments = Payment.__table__
keys = IdempotencyKey.__table__

# What the provider reports for a payment that ended; anything else is still open.
PROVIDER_OUTCOMES = {"succeeded": SUCCEEDED, "canceled": CANCELED}


@dataclass(frozen=True, slots=True)
class PendingSweep:
    """How the stale pending payments ended: settled or failed as the provider reports,
    expired here (canceled at the provider first), or left pending because the provider
    did not answer or did not end it."""

    settled: int = 0
    expired: int = 0
    unreachable: int = 0


@dataclass(frozen=True, slots=True)
class PendingCardPayment:
    id: int
    provider: str | None
    provider_payment_id: str | None


STALE_CARD_PAYMENTS = Read(
    PendingCardPayment,
    select(payments.c.id, payments.c.provider, payments.c.provider_payment_id)
    .where(
        payments.c.method == PaymentMethod.CARD,
        payments.c.status == PaymentStatus.PENDING,
        payments.c.created_at < bindparam("created_before"),
    )
    .order_by(payments.c.id),
)


async def expire_pending_payments(
    db: Database,
    provider: PaymentProvider | None,
    *,
    older_than: timedelta,
    now: datetime,
) -> PendingSweep:
    """Ends every card payment pending since before `now - older_than`.

    Without a provider configured nothing can confirm them any more, so they expire.
    """
    async with db.read() as reader:
        stale = await reader.fetch(STALE_CARD_PAYMENTS, created_before=now - older_than)
    settled = expired = unreachable = 0
    for payment in stale:
        if (
            provider is None
            or payment.provider != provider.name
            or payment.provider_payment_id is None
        ):
            if await _expire(db, payment.id):
                expired += 1
            continue
        try:
            state = await provider.get_payment(payment.provider_payment_id)
            canceled_here = state.status not in PROVIDER_OUTCOMES
            if canceled_here:
                state = await provider.cancel_payment(payment.provider_payment_id)
        except ProviderUnavailable:
            unreachable += 1
            continue
        if canceled_here and state.status == "canceled":
            if await _expire(db, payment.id):
                expired += 1
        elif state.status in PROVIDER_OUTCOMES:
            await _settle(db, provider.name, state)
            settled += 1
        else:
            # The cancel did not end it: failing it here could refuse money still coming.
            unreachable += 1
    return PendingSweep(settled, expired, unreachable)


async def _settle(db: Database, provider_name: str, state: ProviderPayment) -> None:
    """Settles as the webhook would, under a synthetic event id: the real webhook, if it
    still comes, finds the payment no longer pending, and a second sweep's settle finds
    the id already recorded; either way the money is credited once."""
    notice = ProviderNotice(
        event_id=f"sweep-{state.provider_payment_id}",
        type=PROVIDER_OUTCOMES[state.status],
        provider_payment_id=state.provider_payment_id,
        amount=state.amount,
        currency=state.currency,
    )
    await settle(db, provider_name, notice)


async def _expire(db: Database, payment_id: int) -> bool:
    """Fails the payment unless a webhook settled it meanwhile (the status re-checked)."""
    async with db.transaction() as session:
        result = await session.execute(
            update(payments)
            .where(payments.c.id == payment_id, payments.c.status == PaymentStatus.PENDING)
            .values(status=PaymentStatus.FAILED)
        )
        return result.rowcount == 1


async def purge_idempotency_keys(db: Database, *, older_than: timedelta, now: datetime) -> int:
    """Deletes keys created before `now - older_than` that no longer answer retries."""
    if older_than < KEY_TTL:
        raise ValueError(f"idempotency keys answer retries for {KEY_TTL}; keep them that long")
    async with db.transaction() as session:
        result = await session.execute(
            delete(keys).where(keys.c.created_at < now - older_than, keys.c.expires_at <= now)
        )
        return result.rowcount
