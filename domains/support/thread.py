"""A ticket's thread: reading its messages, and the one write every message goes through.

Internal notes are read only when the reader asks for them (staff); a customer's read
never selects them, so no path that starts from a customer's read can show one.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, insert
from sqlalchemy.ext.asyncio import AsyncSession

from domains.reads import Read, Reader, any_of, select_rows
from domains.support import events
from domains.support.models import AuthorKind, TicketMessage
from domains.support.ticket import TicketRow
from domains.writes import Write, writer

messages = TicketMessage.__table__

# A message body's limit, in characters.
MAX_BODY = 10_000


@dataclass(frozen=True, slots=True)
class TicketMessageRow:
    id: int
    ticket_id: int
    author_kind: AuthorKind
    author_id: int | None
    body: str
    internal: bool
    created_at: datetime


_ALL = Read(
    TicketMessageRow,
    select_rows(TicketMessageRow, messages)
    .where(any_of(messages.c.ticket_id, "ticket_ids"))
    .order_by(messages.c.ticket_id, messages.c.id),
)
_PUBLIC = Read(
    TicketMessageRow,
    select_rows(TicketMessageRow, messages)
    .where(any_of(messages.c.ticket_id, "ticket_ids"), messages.c.internal.is_(False))
    .order_by(messages.c.ticket_id, messages.c.id),
)
_BY_ID = Read(
    TicketMessageRow,
    select_rows(TicketMessageRow, messages).where(any_of(messages.c.id, "ids")),
)
_INSERT = Write(
    insert(messages)
    .values(
        {
            name: bindparam(name)
            for name in ("ticket_id", "author_kind", "author_id", "body", "internal", "created_at")
        }
    )
    .returning(*(messages.c[name] for name in TicketMessageRow.__slots__)),
    TicketMessageRow,
)


async def messages_by_ticket_ids(
    reader: Reader, keys: Sequence[tuple[int, bool]]
) -> dict[tuple[int, bool], list[TicketMessageRow]]:
    """Keys are (ticket id, with internal notes); each ticket's messages oldest first."""
    found: dict[tuple[int, bool], list[TicketMessageRow]] = {key: [] for key in keys}
    for internal in (False, True):
        ticket_ids = sorted({ticket_id for ticket_id, with_notes in keys if with_notes is internal})
        if not ticket_ids:
            continue
        read = _ALL if internal else _PUBLIC
        for row in await reader.fetch(read, ticket_ids=ticket_ids):
            found[(row.ticket_id, internal)].append(row)
    return found


async def messages_by_ids(reader: Reader, ids: Sequence[int]) -> dict[int, TicketMessageRow]:
    return {row.id: row for row in await reader.fetch(_BY_ID, ids=ids)}


async def write_message(
    session: AsyncSession,
    *,
    ticket: TicketRow,
    author_kind: AuthorKind,
    author_id: int | None,
    body: str,
    internal: bool,
    now: datetime,
) -> TicketMessageRow:
    """Appends a message to the ticket's thread and records `ticket.message_added`, in the
    caller's transaction. Callers check who may write what (and the body) first; the
    ticket's status and SLA are theirs to change."""
    [row] = await writer(session).fetch(
        _INSERT,
        ticket_id=ticket.id,
        author_kind=author_kind,
        author_id=author_id,
        body=body,
        internal=internal,
        created_at=now,
    )
    await events.message_added(
        session,
        ticket_id=ticket.id,
        customer_id=ticket.customer_id,
        message_id=row.id,
        author_kind=author_kind,
        author_id=author_id,
        internal=internal,
    )
    return row
