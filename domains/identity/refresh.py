"""Refreshing: a refresh token is traded, once, for a new access token and refresh token.

A refresh token that was already traded and comes back means two parties hold it (RFC 9700
4.14.2): the legitimate client or the thief, we cannot tell which, so the whole family
(the session's chain of tokens) and the session end, and both must sign in again.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import NoReturn

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domains.errors import Unauthenticated
from domains.identity.auth import Auth
from domains.identity.credentials import Credentials, issue_credentials, token_hash
from domains.identity.login import account_by_id
from domains.identity.models import RefreshToken, Session
from domains.reads import Read
from domains.writes import writer

refresh_tokens = RefreshToken.__table__
sessions = Session.__table__

MAX_TOKEN_LENGTH = 512
INVALID = "invalid or expired refresh token"
REUSED = "refresh token already used: the session is ended, sign in again"


@dataclass(frozen=True, slots=True)
class RefreshTokenRow:
    """A refresh token, by its hash, and whose session it continues."""

    id: uuid.UUID
    session_id: uuid.UUID
    expires_at: datetime
    used_at: datetime | None
    user_id: int


REFRESH_TOKEN_BY_HASH = Read(
    RefreshTokenRow,
    select(
        refresh_tokens.c.id,
        refresh_tokens.c.session_id,
        refresh_tokens.c.expires_at,
        refresh_tokens.c.used_at,
        sessions.c.user_id,
    )
    .join(sessions, sessions.c.id == refresh_tokens.c.session_id)
    .where(refresh_tokens.c.token_hash == bindparam("token_hash")),
)


async def refresh(auth: Auth, *, token: str) -> Credentials:
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise Unauthenticated(INVALID)
    now = auth.clock.now()
    async with auth.db.read() as reader:
        found = await reader.fetch(REFRESH_TOKEN_BY_HASH, token_hash=token_hash(token))
    if not found:
        raise Unauthenticated(INVALID)
    (refresh_token,) = found
    user_id, session_id = refresh_token.user_id, refresh_token.session_id
    if refresh_token.used_at is not None:
        await _end_family(auth, user_id, session_id)
    if refresh_token.expires_at <= now:
        raise Unauthenticated(INVALID)
    # Checked (and recorded as activity) before the write below, in its own unit of work.
    session = await auth.sessions.use(session_id, user_id)
    if session is None:
        raise Unauthenticated(INVALID)
    async with auth.db.transaction() as tx:
        account = await account_by_id(writer(tx), user_id)
        if account is None or not account.user.is_active:
            raise Unauthenticated(INVALID)
        if await _spend(tx, refresh_token.id, now):
            return await issue_credentials(auth, tx, account.user, account.customer_id, session)
    # Another request spent it between our read and our write: a reuse as well.
    await _end_family(auth, user_id, session_id)


async def _spend(tx: AsyncSession, token_id: uuid.UUID, now: datetime) -> bool:
    """Marks the token used unless it already is: one winner among concurrent trades."""
    result = await tx.execute(
        update(refresh_tokens)
        .where(refresh_tokens.c.id == token_id, refresh_tokens.c.used_at.is_(None))
        .values(used_at=now)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


async def _end_family(auth: Auth, user_id: int, session_id: uuid.UUID) -> NoReturn:
    async with auth.db.transaction() as tx:
        await auth.sessions.revoke(tx, user_id, only=session_id)
    raise Unauthenticated(REUSED)
