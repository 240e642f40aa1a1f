"""Signing in with email and password: a new session and its first pair of tokens."""

import asyncio
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, bindparam, select, update

from domains.customers.models import Customer
from domains.errors import InvalidInput, Unauthenticated
from domains.identity.auth import Auth
from domains.identity.credentials import Credentials, issue_credentials
from domains.identity.models import Role, User
from domains.identity.passwords import (
    MAX_PASSWORD_LENGTH,
    hash_password,
    needs_rehash,
    verify_password,
)
from domains.identity.session import Client
from domains.identity.user import UserRow, normalize_email
from domains.reads import Read, Reader

users = User.__table__
customers = Customer.__table__

MAX_EMAIL_LENGTH = 254
LOGIN_FAILED = "invalid email or password"


@dataclass(frozen=True, slots=True)
class Account:
    """A user with their customer account, if they have one, and their password hash."""

    id: int
    email: str
    role: Role
    is_active: bool
    created_at: datetime
    customer_id: int | None
    password_hash: str

    @property
    def user(self) -> UserRow:
        return UserRow(self.id, self.email, self.role, self.is_active, self.created_at)


def _accounts() -> Select:
    return select(
        users.c.id,
        users.c.email,
        users.c.role,
        users.c.is_active,
        users.c.created_at,
        customers.c.id.label("customer_id"),
        users.c.password_hash,
    ).outerjoin(customers, customers.c.user_id == users.c.id)


ACCOUNT_BY_EMAIL = Read(Account, _accounts().where(users.c.email == bindparam("email")))
ACCOUNT_BY_ID = Read(Account, _accounts().where(users.c.id == bindparam("user_id")))


async def account_by_email(reader: Reader, email: str) -> Account | None:
    found = await reader.fetch(ACCOUNT_BY_EMAIL, email=normalize_email(email))
    return found[0] if found else None


async def account_by_id(reader: Reader, user_id: int) -> Account | None:
    found = await reader.fetch(ACCOUNT_BY_ID, user_id=user_id)
    return found[0] if found else None


async def login(auth: Auth, *, email: str, password: str, client: Client) -> Credentials:
    """One message for every failure, so the answer does not tell which emails exist."""
    if len(email) > MAX_EMAIL_LENGTH or len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput("email or password is too long")
    await auth.throttle.attempt("login", email, client.ip_address)
    async with auth.db.read() as reader:
        account = await account_by_email(reader, email)
    # Runs a full verification even for unknown emails: equal time for both failures.
    # argon2 takes tens of milliseconds: off the event loop, so other requests go on.
    verified = await asyncio.to_thread(
        verify_password, account.password_hash if account else None, password
    )
    if not verified or account is None or not account.user.is_active:
        auth.on_login(False)
        raise Unauthenticated(LOGIN_FAILED)
    await auth.throttle.succeeded("login", email, client.ip_address)
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
