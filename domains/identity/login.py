"""Signing in with email and password."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from domains.customers.models import Customer
from domains.database import Database
from domains.errors import InvalidInput, Unauthenticated
from domains.identity.models import User
from domains.identity.passwords import verify_password
from domains.identity.tokens import TokenService
from domains.identity.user import UserRow, normalize_email

MAX_EMAIL_LENGTH = 254
MAX_PASSWORD_LENGTH = 1024  # argon2 would hash megabytes; refuse before spending the CPU


@dataclass(frozen=True, slots=True)
class LoginResult:
    user: UserRow
    customer_id: int | None
    access_token: str
    expires_at: datetime


async def login(db: Database, tokens: TokenService, *, email: str, password: str) -> LoginResult:
    """One message for every failure, so the answer does not tell which emails exist."""
    if len(email) > MAX_EMAIL_LENGTH or len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput("email or password is too long")
    stmt = (
        select(
            User.id,
            User.email,
            User.role,
            User.is_active,
            User.created_at,
            User.password_hash,
            Customer.id,
        )
        .outerjoin(Customer, Customer.user_id == User.id)
        .where(User.email == normalize_email(email))
    )
    async with db.read() as conn:
        found = (await conn.execute(stmt)).first()
    password_hash = found[5] if found else None
    # Runs a full verification even for unknown emails: equal time for both failures.
    if not verify_password(password_hash, password) or found is None or not found[3]:
        raise Unauthenticated("invalid email or password")
    user = UserRow(*found[:5])
    token, expires_at = tokens.issue_access_token(
        user_id=user.id, role=user.role, customer_id=found[6]
    )
    return LoginResult(user, found[6], token, expires_at)
