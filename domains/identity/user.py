"""Reading users."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from domains.identity.models import Role, User
from domains.reads import Read, Reader, any_of, select_rows

users = User.__table__


@dataclass(frozen=True, slots=True)
class UserRow:
    id: int
    email: str
    role: Role
    is_active: bool
    created_at: datetime


USERS_BY_ID = Read(UserRow, select_rows(UserRow, users).where(any_of(users.c.id, "ids")))


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def users_by_ids(reader: Reader, ids: Sequence[int]) -> dict[int, UserRow]:
    return {row.id: row for row in await reader.fetch(USERS_BY_ID, ids=ids)}
