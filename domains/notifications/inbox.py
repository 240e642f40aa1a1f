"""A user's in-app inbox: newest first, the unread count, marking entries read."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, func, literal_column, select, update

from domains.database import Database
from domains.keyset import Ordering, Page, PageRead, Window
from domains.notifications.models import Category, Medium, Notification
from domains.reads import Read, Reader, any_of, select_rows

notifications = Notification.__table__

_IN_APP = notifications.c.medium == literal_column(f"'{Medium.IN_APP.value}'")


@dataclass(frozen=True, slots=True)
class InboxRow:
    id: int
    user_id: int
    event_type: str
    category: Category
    title: str | None
    body: str | None
    created_at: datetime
    read_at: datetime | None


@dataclass(frozen=True, slots=True)
class Count:
    count: int


INBOX_ORDER = Ordering((notifications.c.id,), descending=True)
INBOX_PAGES = PageRead(
    InboxRow,
    select_rows(InboxRow, notifications).where(
        notifications.c.user_id == bindparam("user_id"), _IN_APP
    ),
    INBOX_ORDER,
)
INBOX_BY_ID = Read(
    InboxRow, select_rows(InboxRow, notifications).where(any_of(notifications.c.id, "ids"), _IN_APP)
)
UNREAD = Read(
    Count,
    select(func.count().label("count")).where(
        notifications.c.user_id == bindparam("user_id"),
        _IN_APP,
        notifications.c.read_at.is_(None),
    ),
)


async def inbox_page(reader: Reader, user_id: int, window: Window) -> Page[InboxRow]:
    return await INBOX_PAGES.page(reader, window, user_id=user_id)


async def inbox_by_ids(reader: Reader, ids: Sequence[int]) -> dict[int, InboxRow]:
    return {row.id: row for row in await reader.fetch(INBOX_BY_ID, ids=ids)}


async def unread_count(reader: Reader, user_id: int) -> int:
    (row,) = await reader.fetch(UNREAD, user_id=user_id)
    return row.count


async def mark_read(db: Database, user_id: int, ids: Sequence[int] | None, now: datetime) -> int:
    """Marks the user's entries read (`ids`, or all when None); others' ids are ignored, as
    if missing. Returns how many were unread."""
    statement = update(notifications).where(
        notifications.c.user_id == user_id, _IN_APP, notifications.c.read_at.is_(None)
    )
    if ids is not None:
        statement = statement.where(notifications.c.id.in_(list(ids)))
    async with db.transaction() as tx:
        marked = await tx.execute(statement.values(read_at=now))
    return int(marked.rowcount)  # type: ignore[attr-defined]
