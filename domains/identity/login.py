"""Signing in with email and password: a new session and its first pair of tokens."""

import asyncio
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from domains.customers.models import Customer
from domains.errors import InvalidInput, Unauthenticated
from domains.identity.auth import Auth
from domains.identity.credentials import Credentials, issue_credentials
from domains.identity.models import User
from domains.identity.passwords import (
    MAX_PASSWORD_LENGTH,
    hash_password,
    needs_rehash,
    verify_password,
)
from domains.identity.session import Client
from domains.identity.user import UserRow, normalize_email

MAX_EMAIL_LENGTH = 254
LOGIN_FAILED = "invalid email or password"


@dataclass(frozen=True, slots=True)
class Account:
    user: UserRow
    customer_id: int | None
    password_hash: str


async def find_account(conn: AsyncConnection | AsyncSession, *where: Any) -> Account | None:
    """A user with their customer account, if they have one."""
    stmt = (
        select(
            User.id,
            User.email,
            User.role,
            User.is_active,
            User.created_at,
            Customer.id,
            User.password_hash,
        )
        .outerjoin(Customer, Customer.user_id == User.id)
        .where(*where)
    )
    found = (await conn.execute(stmt)).first()
    return None if found is None else Account(UserRow(*found[:5]), found[5], found[6])


async def login(auth: Auth, *, email: str, password: str, client: Client) -> Credentials:
    """One message for every failure, so the answer does not tell which emails exist."""
    if len(email) > MAX_EMAIL_LENGTH or len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput("email or password is too long")
    await auth.throttle.attempt("login", email, client.ip_address)
    async with auth.db.read() as conn:
        account = await find_account(conn, User.email == normalize_email(email))
    # Runs a full verification even for unknown emails: equal time for both failures.
    # argon2 takes tens of milliseconds: off the event loop, so other requests go on.
    verified = await asyncio.to_thread(
        verify_password, account.password_hash if account else None, password
    )
    if not verified or account is None or not account.user.is_active:
        auth.on_login(False)
        raise Unauthenticated(LOGIN_FAILED)
    rehashed = (
        await asyncio.to_thread(hash_password, password)
        if needs_rehash(account.password_hash)
        else None
    )
    async with auth.db.transaction() as tx:
        if rehashed is not None:
            await tx.execute(
                update(User).where(User.id == account.user.id).values(password_hash=rehashed)
            )
        session = await auth.sessions.open(tx, account.user.id, client)
        credentials = await issue_credentials(auth, tx, account.user, account.customer_id, session)
    auth.on_login(True)
    return credentials
