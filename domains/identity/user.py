"""Reading users: by id, and the staff list."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, bindparam

from domains.identity.models import Role, User
from domains.keyset import Ordering, Page, PageRead, Window
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


USER_ORDER = Ordering((users.c.id,), descending=False)


@dataclass(frozen=True, slots=True)
class UserFilter:
    """Which users staff list: of any of these roles, active or not, whose email starts so."""

    roles: frozenset[Role] = frozenset()
    is_active: bool | None = None
    email_prefix: str | None = None

    @property
    def shape(self) -> tuple[bool, bool, bool]:
        return (bool(self.roles), self.is_active is not None, bool(self.email_prefix))


def _listed(shape: tuple[bool, bool, bool]) -> Select:
    by_role, by_active, by_prefix = shape
    stmt = select_rows(UserRow, users)
    if by_role:
        stmt = stmt.where(any_of(users.c.role, "roles"))
    if by_active:
        stmt = stmt.where(users.c.is_active == bindparam("is_active"))
    if by_prefix:
        # Emails are stored lower-cased: a prefix match the unique index serves.
        stmt = stmt.where(users.c.email.like(bindparam("prefix"), escape="\\"))
    return stmt


USER_LIST = PageRead(UserRow, _listed, USER_ORDER)


async def list_users(reader: Reader, filter: UserFilter, window: Window) -> Page[UserRow]:
    values: dict[str, object] = {}
    if filter.roles:
        values["roles"] = sorted(filter.roles)
    if filter.is_active is not None:
        values["is_active"] = filter.is_active
    if filter.email_prefix:
        term = normalize_email(filter.email_prefix)
        escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        values["prefix"] = f"{escaped}%"
    return await USER_LIST.page(reader, window, shape=filter.shape, **values)
