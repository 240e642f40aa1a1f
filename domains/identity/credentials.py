"""What a client holds for one session: a short access token and a single-use refresh token.

Refresh tokens are opaque random strings (256 bits); only their SHA-256 hash is stored, so a
leak of the table does not hand out sessions. Each use replaces the token (RFC 9700 4.14.2
rotation); the chain of one session's tokens is its family.
"""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from domains.identity.auth import Auth
from domains.identity.models import RefreshToken
from domains.identity.session_store import StoredSession
from domains.identity.user import UserRow

refresh_tokens = RefreshToken.__table__

REFRESH_TOKEN_BYTES = 32


@dataclass(frozen=True, slots=True)
class Credentials:
    user: UserRow
    customer_id: int | None
    session_id: str
    access_token: str
    expires_at: datetime
    refresh_token: str
    refresh_expires_at: datetime


def token_hash(token: str) -> str:
    """The stored form of a random token; plain SHA-256 suffices for 256 random bits."""
    return hashlib.sha256(token.encode()).hexdigest()


async def issue_credentials(
    auth: Auth,
    tx: AsyncSession,
    user: UserRow,
    customer_id: int | None,
    session: StoredSession,
) -> Credentials:
    """A new access token and the session's next refresh token, in the caller's unit of work."""
    now = auth.clock.now()
    refresh_token = secrets.token_urlsafe(REFRESH_TOKEN_BYTES)
    refresh_expires_at = min(now + auth.refresh_idle_timeout, session.expires_at)
    await tx.execute(
        refresh_tokens.insert().values(
            session_id=session.id,
            token_hash=token_hash(refresh_token),
            created_at=now,
            expires_at=refresh_expires_at,
        )
    )
    access_token, expires_at = auth.tokens.issue_access_token(
        user_id=user.id,
        role=user.role,
        customer_id=customer_id,
        session_id=session.id,
        not_after=session.expires_at,
    )
    return Credentials(
        user=user,
        customer_id=customer_id,
        session_id=str(session.id),
        access_token=access_token,
        expires_at=expires_at,
        refresh_token=refresh_token,
        refresh_expires_at=refresh_expires_at,
    )
