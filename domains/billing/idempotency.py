"""Idempotency keys, per customer: claimed in the transaction of the request they guard.

A key is kept `KEY_TTL`; a live key answers a retry with the first request's answer (the
payment it made, or the refund), an expired one is taken over by the next request that
names it. The users of these steps, in their order: `domains.billing.payment_start` and
`domains.billing.refund_payment`.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from domains.base import CENT
from domains.billing.errors import IdempotencyKeyReused
from domains.billing.models import IdempotencyKey
from domains.errors import InvalidInput
from domains.reads import Read, select_rows
from domains.writes import Write, writer

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


# Inserts the key, or takes over an expired one (`created_at` is now); a live one stays.
_insert_key = postgresql.insert(keys).values(
    customer_id=bindparam("customer_id"),
    key=bindparam("key"),
    fingerprint=bindparam("fingerprint"),
    payment_id=None,
    refund_id=None,
    created_at=bindparam("created_at"),
    expires_at=bindparam("expires_at"),
)
_CLAIM_KEY = Write(
    _insert_key.on_conflict_do_update(
        index_elements=[keys.c.customer_id, keys.c.key],
        set_={
            name: _insert_key.excluded[name]
            for name in ("fingerprint", "payment_id", "refund_id", "created_at", "expires_at")
        },
        where=keys.c.expires_at <= bindparam("created_at"),
    )
)
_BIND_KEY = Write(
    update(keys)
    .where(keys.c.customer_id == bindparam("of_customer"), keys.c.key == bindparam("of_key"))
    .values(payment_id=bindparam("payment_id"), refund_id=bindparam("refund_id"))
)


@dataclass(frozen=True, slots=True)
class KeyRow:
    """A live key's answer: what the claiming request made, bound in its transaction."""

    fingerprint: str
    payment_id: int | None
    refund_id: int | None


_KEY = Read(
    KeyRow,
    select_rows(KeyRow, keys).where(
        keys.c.customer_id == bindparam("customer_id"), keys.c.key == bindparam("key")
    ),
)


async def claim_key(
    session: AsyncSession, customer_id: int, key: str, request: str, now: datetime
) -> bool:
    """Inserts the key, or takes over an expired one; False when a live one exists."""
    claimed = await writer(session).execute(
        _CLAIM_KEY,
        customer_id=customer_id,
        key=key,
        fingerprint=request,
        created_at=now,
        expires_at=now + KEY_TTL,
    )
    return claimed > 0


async def bind_key(
    session: AsyncSession,
    customer_id: int,
    key: str,
    *,
    payment_id: int | None = None,
    refund_id: int | None = None,
) -> None:
    """Records what the claiming request made: what a retry is answered with."""
    await writer(session).execute(
        _BIND_KEY, of_customer=customer_id, of_key=key, payment_id=payment_id, refund_id=refund_id
    )


async def replayed(session: AsyncSession, customer_id: int, key: str, request: str) -> KeyRow:
    """The live key's answer (`payment_id`, `refund_id`), if it was claimed by the same
    request: a payment's and a refund's fingerprints never match."""
    [row] = await writer(session).fetch(_KEY, customer_id=customer_id, key=key)
    if row.fingerprint != request:
        raise IdempotencyKeyReused("this idempotency key was used for another request")
    return row
