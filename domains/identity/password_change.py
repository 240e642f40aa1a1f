"""Changing one's password while signed in: proves the current one, ends every other session."""

import asyncio

from sqlalchemy import update

from domains.errors import InvalidInput, Unauthenticated
from domains.events.subject import USER
from domains.identity.auth import Auth
from domains.identity.login import account_by_id
from domains.identity.models import User
from domains.identity.passwords import (
    MAX_PASSWORD_LENGTH,
    check_password_policy,
    hash_password,
    verify_password,
)
from domains.identity.session import Client
from domains.identity.viewer import Viewer
from domains.outbox import record_event

PASSWORD_CHANGED = "identity.password_changed"  # noqa: S105 - an event type, not a secret


async def change_password(
    auth: Auth, viewer: Viewer, *, current_password: str, new_password: str, client: Client
) -> None:
    if len(current_password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput("the current password is wrong")
    async with auth.db.read() as reader:
        account = await account_by_id(reader, viewer.user_id)
    if account is None or not account.user.is_active:
        raise Unauthenticated("sign in again")
    check_password_policy(new_password, account.user.email)
    # Guessing the current password with a stolen access token is guessing all the same.
    await auth.throttle.attempt("login", account.user.email, client.ip_address)
    if not await asyncio.to_thread(verify_password, account.password_hash, current_password):
        raise InvalidInput("the current password is wrong")
    await auth.throttle.succeeded("login", account.user.email, client.ip_address)
    password_hash = await asyncio.to_thread(hash_password, new_password)
    async with auth.db.transaction() as tx:
        await tx.execute(
            update(User).where(User.id == account.user.id).values(password_hash=password_hash)
        )
        await auth.sessions.revoke(tx, account.user.id, keep=viewer.session_id)
        await record_event(
            tx,
            PASSWORD_CHANGED,
            USER.of(account.user.id),
            {"version": 1, "user_id": account.user.id, "email": account.user.email, "by": "user"},
        )
