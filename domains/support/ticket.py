"""Reading tickets: by id, and newest-first pages per customer."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from domains.keyset import Ordering, Page, PageRead, Window
from domains.reads import Read, Reader, any_of, select_rows
from domains.support.models import (
    Ticket,
    TicketCategory,
    TicketChannel,
    TicketPriority,
    TicketStatus,
)

tickets = Ticket.__table__


@dataclass(frozen=True, slots=True)
class TicketRow:
    id: int
    customer_id: int
    contract_id: int | None
    category: TicketCategory
    subject: str
    priority: TicketPriority
    priority_rule_id: int | None
    status: TicketStatus
    channel: TicketChannel
    assignee_id: int | None
    created_by: int
    created_at: datetime
    updated_at: datetime
    first_response_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    first_response_due_at: datetime | None
    resolution_due_at: datetime | None
    sla_paused_at: datetime | None
    first_response_breached_at: datetime | None
    resolution_breached_at: datetime | None


TICKET_ORDER = Ordering((tickets.c.created_at, tickets.c.id), descending=True)

TICKETS_BY_ID = Read(TicketRow, select_rows(TicketRow, tickets).where(any_of(tickets.c.id, "ids")))
TICKET_PAGES = PageRead(
    TicketRow,
    select_rows(TicketRow, tickets).where(any_of(tickets.c.customer_id, "customer_ids")),
    TICKET_ORDER,
    partition=tickets.c.customer_id,
)


async def tickets_by_ids(reader: Reader, ids: Sequence[int]) -> dict[int, TicketRow]:
    return {row.id: row for row in await reader.fetch(TICKETS_BY_ID, ids=ids)}


async def ticket_pages_by_customer_ids(
    reader: Reader, customer_ids: Sequence[int], window: Window
) -> dict[int, Page[TicketRow]]:
    return await TICKET_PAGES.pages(reader, window, customer_ids, customer_ids=customer_ids)
