"""Forgotten passwords: a single-use, expiring link sent by email, then a new password.

Asking for a reset answers the same, in about the same time, whether or not the email
has an account, so the form cannot be used to find out who is a customer. The link's token
is never stored nor sent in clear: it is an HMAC of the reset request's id under a key of
the deployment's (`Auth.reset_link_key`), the table keeps its SHA-256 hash, and the event
(`identity.password_reset_requested`, through the outbox, Kafka and any dead-letter topic)
names only the request; the notification service, which holds the key, derives the link
(`reset_link_token`). A new request voids the user's earlier links.
"""

import asyncio
import base64
import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domains.errors import InvalidInput
from domains.events.subject import USER
from domains.identity.auth import Auth
from domains.identity.credentials import token_hash
from domains.identity.login import MAX_EMAIL_LENGTH
from domains.identity.models import PasswordReset, User
from domains.identity.password_change import PASSWORD_CHANGED
from domains.identity.passwords import check_password_policy, hash_password
from domains.identity.session import Client
from domains.identity.user import normalize_email
from domains.outbox import record_event
from domains.reads import Read

password_resets = PasswordReset.__table__
users = User.__table__

RESET_REQUESTED = "identity.password_reset_requested"
_LINK_PURPOSE = b"kabinet password-reset link\0"
MAX_TOKEN_LENGTH = 512
INVALID_LINK = "this password-reset link is invalid, used or expired"
# Every request takes at least this long, so the extra writes for a real account don't show.
RESPONSE_FLOOR_SECONDS = 0.2


def reset_link_token(key: bytes, reset_id: uuid.UUID) -> str:
    """The token of a reset request's link: only who holds `key` can make it."""
    mac = hmac.new(key, _LINK_PURPOSE + reset_id.bytes, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class ResetLink:
    """A reset link still good (unused, unexpired, of an active user)."""

    id: uuid.UUID
    user_id: int
    email: str


RESET_LINK_BY_HASH = Read(
    ResetLink,
    select(password_resets.c.id, users.c.id.label("user_id"), users.c.email)
    .join(users, users.c.id == password_resets.c.user_id)
    .where(
        password_resets.c.token_hash == bindparam("token_hash"),
        password_resets.c.used_at.is_(None),
        password_resets.c.expires_at > bindparam("now"),
        users.c.is_active.is_(True),
    ),
)


async def request_password_reset(auth: Auth, *, email: str, client: Client) -> None:
    if len(email) > MAX_EMAIL_LENGTH:
        raise InvalidInput("email is too long")
    started = time.monotonic()
    try:
        await auth.throttle.attempt("password_reset", email, client.ip_address)
        await _send_link(auth, normalize_email(email))
    finally:
        await asyncio.sleep(max(0.0, RESPONSE_FLOOR_SECONDS - (time.monotonic() - started)))


async def _send_link(auth: Auth, email: str) -> None:
    now = auth.clock.now()
    async with auth.db.transaction() as tx:
        stmt = select(users.c.id).where(users.c.email == email, users.c.is_active.is_(True))
        user_id = (await tx.execute(stmt)).scalar_one_or_none()
        if user_id is None:
            return
        reset_id, expires_at = await issue_link(
            tx, auth.reset_link_key, user_id, now=now, ttl=auth.password_reset_ttl
        )
        await record_event(
            tx,
            RESET_REQUESTED,
            USER.of(user_id),
            {
                "version": 2,  # 1 carried the token itself
                "user_id": user_id,
                "email": email,
                "reset_id": str(reset_id),
                "expires_at": expires_at.isoformat(),
            },
        )


async def issue_link(
    tx: AsyncSession, key: bytes, user_id: int, *, now: datetime, ttl: timedelta
) -> tuple[uuid.UUID, datetime]:
    """A new single-use link for the user, voiding their earlier ones: its request id (what
    the event names) and expiry. Invitations (domains/identity/invitation.py) use it too."""
    await tx.execute(
        update(password_resets)
        .where(password_resets.c.user_id == user_id, password_resets.c.used_at.is_(None))
        .values(used_at=now)
    )
    reset_id = uuid.uuid4()
    expires_at = now + ttl
    await tx.execute(
        password_resets.insert().values(
            id=reset_id,
            user_id=user_id,
            token_hash=token_hash(reset_link_token(key, reset_id)),
            created_at=now,
            expires_at=expires_at,
        )
    )
    return reset_id, expires_at


async def reset_password(auth: Auth, *, token: str, new_password: str) -> None:
    """Sets the new password, spends the token and ends every session of the user."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidInput(INVALID_LINK)
    now = auth.clock.now()
    async with auth.db.read() as reader:
        found = await reader.fetch(RESET_LINK_BY_HASH, token_hash=token_hash(token), now=now)
    if not found:
        raise InvalidInput(INVALID_LINK)
    (link,) = found
    reset_id, user_id, email = link.id, link.user_id, link.email
    check_password_policy(new_password, email)
    password_hash = await asyncio.to_thread(hash_password, new_password)
    async with auth.db.transaction() as tx:
        spent = await tx.execute(
            update(password_resets)
            .where(password_resets.c.id == reset_id, password_resets.c.used_at.is_(None))
            .values(used_at=now)
        )
        if spent.rowcount != 1:  # type: ignore[attr-defined]
            raise InvalidInput(INVALID_LINK)
        await tx.execute(
            update(users).where(users.c.id == user_id).values(password_hash=password_hash)
        )
        await auth.sessions.revoke(tx, user_id)
        await record_event(
            tx,
            PASSWORD_CHANGED,
            USER.of(user_id),
            {"version": 1, "user_id": user_id, "email": email, "by": "reset"},
        )
