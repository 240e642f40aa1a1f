"""Reading users."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from domains.identity.models import Role, User
from domains.rows import fetch_rows, select_rows

users = User.__table__


@dataclass(frozen=True, slots=True)
class UserRow:
    id: int
    email: str
    role: Role
    is_active: bool
    created_at: datetime


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def users_by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, UserRow]:
    stmt = select_rows(UserRow, users).where(users.c.id.in_(ids))
    return {row.id: row for row in await fetch_rows(conn, UserRow, stmt)}
