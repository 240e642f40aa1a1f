"""The ticket queue staff work from: every ticket, filtered, oldest first, keyset pages."""

from collections.abc import Set
from dataclasses import dataclass

from sqlalchemy import Select, bindparam

from domains.errors import InvalidInput
from domains.keyset import Ordering, Page, PageRead, Window
from domains.reads import Reader, any_of, select_rows
from domains.support.models import TicketCategory, TicketPriority, TicketStatus
from domains.support.ticket import TicketRow, tickets

QUEUE_ORDER = Ordering((tickets.c.created_at, tickets.c.id), descending=False)


@dataclass(frozen=True, slots=True)
class QueueFilter:
    """What to show; an empty set means any. `unassigned` and `assignee_id` exclude each
    other."""

    statuses: Set[TicketStatus] = frozenset()
    priorities: Set[TicketPriority] = frozenset()
    categories: Set[TicketCategory] = frozenset()
    assignee_id: int | None = None
    unassigned: bool = False

    def __post_init__(self) -> None:
        if self.unassigned and self.assignee_id is not None:
            raise InvalidInput("ask for one assignee or for the unassigned, not both")


def _queue(shape: tuple[bool, bool, bool, bool, bool]) -> Select:
    statuses, priorities, categories, assignee, unassigned = shape
    stmt = select_rows(TicketRow, tickets)
    if statuses:
        stmt = stmt.where(any_of(tickets.c.status, "statuses"))
    if priorities:
        stmt = stmt.where(any_of(tickets.c.priority, "priorities"))
    if categories:
        stmt = stmt.where(any_of(tickets.c.category, "categories"))
    if assignee:
        stmt = stmt.where(tickets.c.assignee_id == bindparam("assignee_id"))
    if unassigned:
        stmt = stmt.where(tickets.c.assignee_id.is_(None))
    return stmt


QUEUE_PAGES = PageRead(TicketRow, _queue, QUEUE_ORDER)


async def ticket_queue_page(reader: Reader, where: QueueFilter, window: Window) -> Page[TicketRow]:
    values = {
        "statuses": sorted(where.statuses),
        "priorities": sorted(where.priorities),
        "categories": sorted(where.categories),
    }
    given = {name: value for name, value in values.items() if value}
    if where.assignee_id is not None:
        given["assignee_id"] = where.assignee_id
    shape = (
        *(bool(value) for value in values.values()),
        where.assignee_id is not None,
        where.unassigned,
    )
    return await QUEUE_PAGES.page(reader, window, shape=shape, **given)
