"""A new account's invitation: the password-reset link, longer-lived, sent by email.

Staff never choose a password: an account they create starts with one nobody knows, and
the invitation's link (the same single-use token as a reset, `issue_link`) sets the first
one through `resetPassword`. The event, `identity.invitation_created` (payload version 1:
`{version, user_id, email, full_name, reset_id, expires_at}`), names only the request; the
notification service derives the link from it, as for a reset.
"""

import asyncio
import secrets

from sqlalchemy.ext.asyncio import AsyncSession

from domains.events.subject import USER
from domains.identity.auth import Auth
from domains.identity.password_reset import issue_link
from domains.identity.passwords import hash_password
from domains.outbox import record_event

INVITATION_CREATED = "identity.invitation_created"


async def unknown_password_hash() -> str:
    """A real argon2 hash of a secret thrown away: signing in with it costs what any wrong
    password costs, so an account still waiting for its first password does not show."""
    return await asyncio.to_thread(hash_password, secrets.token_urlsafe(32))


async def invite(tx: AsyncSession, auth: Auth, *, user_id: int, email: str, full_name: str) -> None:
    """Issues the invitation's link in the unit of work that made the account."""
    now = auth.clock.now()
    reset_id, expires_at = await issue_link(
        tx, auth.reset_link_key, user_id, now=now, ttl=auth.invitation_ttl
    )
    await record_event(
        tx,
        INVITATION_CREATED,
        USER.of(user_id),
        {
            "version": 1,
            "user_id": user_id,
            "email": email,
            "full_name": full_name,
            "reset_id": str(reset_id),
            "expires_at": expires_at.isoformat(),
        },
    )
