"""Reading support operators: presence, capacity, load and the categories they handle."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from domains.keyset import Ordering, Page, PageRead, Window
from domains.reads import Read, Reader, any_of, group_by, select_rows
from domains.support.models import Presence, SupportOperator, SupportOperatorSkill, TicketCategory

operators = SupportOperator.__table__
skills = SupportOperatorSkill.__table__


@dataclass(frozen=True, slots=True)
class OperatorRow:
    user_id: int
    presence: Presence
    capacity: int
    open_tickets: int
    last_assigned_at: datetime | None
    presence_changed_at: datetime


@dataclass(frozen=True, slots=True)
class OperatorSkillRow:
    user_id: int
    category: TicketCategory


OPERATOR_ORDER = Ordering((operators.c.user_id,), descending=False)

OPERATORS_BY_ID = Read(
    OperatorRow, select_rows(OperatorRow, operators).where(any_of(operators.c.user_id, "ids"))
)
SKILLS_BY_USER_ID = Read(
    OperatorSkillRow,
    select_rows(OperatorSkillRow, skills)
    .where(any_of(skills.c.user_id, "user_ids"))
    .order_by(skills.c.user_id, skills.c.category),
)
OPERATOR_PAGES = PageRead(OperatorRow, select_rows(OperatorRow, operators), OPERATOR_ORDER)


async def operators_by_ids(reader: Reader, ids: Sequence[int]) -> dict[int, OperatorRow]:
    return {row.user_id: row for row in await reader.fetch(OPERATORS_BY_ID, ids=ids)}


async def skills_by_user_ids(
    reader: Reader, user_ids: Sequence[int]
) -> dict[int, list[TicketCategory]]:
    rows = group_by(await reader.fetch(SKILLS_BY_USER_ID, user_ids=user_ids), "user_id", user_ids)
    return {user_id: [row.category for row in found] for user_id, found in rows.items()}


async def operator_page(reader: Reader, window: Window) -> Page[OperatorRow]:
    """Every operator, by user id (staff)."""
    return await OPERATOR_PAGES.page(reader, window)
