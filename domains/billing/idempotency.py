"""Idempotency keys, per customer: claimed in the transaction of the request they guard.

A key is kept `KEY_TTL`; a live key answers a retry with the first request's answer (the
payment it made, or the refund), an expired one is taken over by the next request that
names it. The users of these steps, in their order: `domains.billing.payment_start` and
`domains.billing.refund_payment`.
"""

import hashlib
import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domains.base import CENT
from domains.billing.errors import IdempotencyKeyReused
from domains.billing.models import IdempotencyKey
from domains.database import conflict_insert
from domains.errors import InvalidInput

keys = IdempotencyKey.__table__

KEY_TTL = timedelta(hours=24)
MAX_KEY_LENGTH = 255


def check_key(key: str) -> None:
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(f"an idempotency key is 1 to {MAX_KEY_LENGTH} characters")


def request_fingerprint(canonical: dict[str, Any]) -> str:
    """sha256 (hex) of the request's parameters: a retry must ask for the same. Amounts
    count in cents, so `10` and `10.00` are one request."""
    encoded = json.dumps(canonical, sort_keys=True, separators=(",", ":"), default=_cents)
    return hashlib.sha256(encoded.encode()).hexdigest()


def _cents(value: object) -> str:
    if not isinstance(value, Decimal):
        raise TypeError(f"a fingerprint holds amounts, ids and names, not {type(value).__name__}")
    return str(value.quantize(CENT))


async def claim_key(
    session: AsyncSession, customer_id: int, key: str, request: str, now: datetime
) -> bool:
    """Inserts the key, or takes over an expired one; False when a live one exists."""
    values = {
        "customer_id": customer_id,
        "key": key,
        "fingerprint": request,
        "payment_id": None,
        "refund_id": None,
        "created_at": now,
        "expires_at": now + KEY_TTL,
    }
    stmt = conflict_insert(session, keys).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[keys.c.customer_id, keys.c.key],
        set_={name: stmt.excluded[name] for name in values if name not in ("customer_id", "key")},
        where=keys.c.expires_at <= now,
    ).returning(keys.c.id)
    return (await session.execute(stmt)).first() is not None


async def bind_key(
    session: AsyncSession,
    customer_id: int,
    key: str,
    *,
    payment_id: int | None = None,
    refund_id: int | None = None,
) -> None:
    """Records what the claiming request made: what a retry is answered with."""
    await session.execute(
        update(keys)
        .where(keys.c.customer_id == customer_id, keys.c.key == key)
        .values(payment_id=payment_id, refund_id=refund_id)
    )


async def replayed(session: AsyncSession, customer_id: int, key: str, request: str) -> Row:
    """The live key's answer (`payment_id`, `refund_id`), if it was claimed by the same
    request: a payment's and a refund's fingerprints never match."""
    stmt = select(keys.c.fingerprint, keys.c.payment_id, keys.c.refund_id).where(
        keys.c.customer_id == customer_id, keys.c.key == key
    )
    row = (await session.execute(stmt)).one()
    if row.fingerprint != request:
        raise IdempotencyKeyReused("this idempotency key was used for another request")
    return row
