"""A ticket's status moves, and what each move does to its stamps and its SLA clock.

new -> open when support first answers (or staff say so); open <-> pending_customer while
support waits on the customer; resolved, reopened to open by the customer's message within
the reopen window (or by staff); closed is final. The SLA clock stands still while the
ticket waits on the customer: entering pending_customer stamps `sla_paused_at`, leaving it
moves both due times forward by the time it waited, so a due time always means the moment
support must act by. Resolving stamps `resolved_at` (cleared again by a reopen), closing
`closed_at`.

A ticket holds a slot of its assignee's capacity while new, open or pending_customer: a
move out of those frees it (domains/support/assignment.py's `release`, which also lets the
assignee's queue fill it), a reopen takes one again (`hold`). Every move is one
`ticket.status_changed` event, in the transaction that made it. The caller holds the
ticket's row lock (`lock_ticket`), taken before any operator's, as assignment's lock order
says.
"""

from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import bindparam, update
from sqlalchemy.ext.asyncio import AsyncSession

from domains.reads import select_rows
from domains.support import events
from domains.support.assignment import hold, release
from domains.support.errors import InvalidTransition
from domains.support.models import ACTIVE_STATUSES, TicketStatus
from domains.support.ticket import TicketRow, tickets
from domains.writes import Write, writer

NEW, OPEN, PENDING, RESOLVED, CLOSED = (
    TicketStatus.NEW,
    TicketStatus.OPEN,
    TicketStatus.PENDING_CUSTOMER,
    TicketStatus.RESOLVED,
    TicketStatus.CLOSED,
)
# Where staff may move a ticket from each status. Nothing goes back to new (it means nobody
# has answered), and nothing leaves closed.
TRANSITIONS: dict[TicketStatus, frozenset[TicketStatus]] = {
    NEW: frozenset({OPEN, PENDING, RESOLVED, CLOSED}),
    OPEN: frozenset({PENDING, RESOLVED, CLOSED}),
    PENDING: frozenset({OPEN, RESOLVED, CLOSED}),
    RESOLVED: frozenset({OPEN, CLOSED}),
    CLOSED: frozenset(),
}

_LOCK = Write(
    select_rows(TicketRow, tickets).where(tickets.c.id == bindparam("ticket_id")).with_for_update(),
    TicketRow,
)
# The columns a lifecycle step changes, all written from the row it computed.
_STATE = (
    "status",
    "updated_at",
    "first_response_at",
    "resolved_at",
    "closed_at",
    "first_response_due_at",
    "resolution_due_at",
    "sla_paused_at",
)
_SAVE = Write(
    update(tickets)
    .where(tickets.c.id == bindparam("ticket_id"))
    .values({name: bindparam(name) for name in _STATE})
)


async def lock_ticket(session: AsyncSession, ticket_id: int) -> TicketRow | None:
    """The ticket as it is now, locked for the caller's unit of work."""
    found = await writer(session).fetch(_LOCK, ticket_id=ticket_id)
    return found[0] if found else None


def check_transition(ticket: TicketRow, status: TicketStatus) -> None:
    if status not in TRANSITIONS[ticket.status]:
        raise InvalidTransition(
            f"a {ticket.status.value} ticket cannot become {status.value}",
        )


def _later(due: datetime | None, by: timedelta) -> datetime | None:
    return None if due is None else due + by


def moved(ticket: TicketRow, status: TicketStatus, now: datetime) -> TicketRow:
    """The ticket in `status` from `now`: its stamps and SLA clock as that move leaves them
    (unchecked: `check_transition` says whether staff may make it)."""
    changed = replace(ticket, status=status, updated_at=now)
    if ticket.sla_paused_at is not None and status is not PENDING:
        waited = max(now - ticket.sla_paused_at, timedelta(0))
        changed = replace(
            changed,
            sla_paused_at=None,
            first_response_due_at=_later(ticket.first_response_due_at, waited),
            resolution_due_at=_later(ticket.resolution_due_at, waited),
        )
    if status is PENDING and ticket.sla_paused_at is None:
        changed = replace(changed, sla_paused_at=now)
    if status is RESOLVED:
        changed = replace(changed, resolved_at=now)
    elif status is not CLOSED:
        changed = replace(changed, resolved_at=None)
    if status is CLOSED:
        changed = replace(changed, closed_at=now)
    return changed


async def _save(session: AsyncSession, ticket: TicketRow) -> None:
    """Writes the ticket's lifecycle columns as `ticket` has them."""
    await writer(session).execute(
        _SAVE, ticket_id=ticket.id, **{name: getattr(ticket, name) for name in _STATE}
    )


async def change_status(
    session: AsyncSession,
    ticket: TicketRow,
    status: TicketStatus,
    *,
    changed_by: int | None,
    now: datetime,
    first_response: bool = False,
) -> TicketRow:
    """Moves the locked `ticket` to `status` (or, given the status it has, only marks it
    updated `now`: a public message), stamping the first response too when this is
    support's first answer, with its event and its assignee's capacity; the ticket as it
    is now."""
    if status is ticket.status:
        changed = replace(ticket, updated_at=now)
    else:
        changed = moved(ticket, status, now)
    if first_response:
        changed = replace(changed, first_response_at=now)
    await _save(session, changed)
    if status is not ticket.status:
        await events.status_changed(
            session,
            ticket_id=ticket.id,
            customer_id=ticket.customer_id,
            old_status=ticket.status,
            new_status=status,
            changed_by=changed_by,
            priority=ticket.priority,
            category=ticket.category,
        )
        changed = await _capacity(session, ticket, changed, now)
    return changed


async def _capacity(
    session: AsyncSession, before: TicketRow, after: TicketRow, now: datetime
) -> TicketRow:
    """Frees the assignee's slot when the ticket leaves the active statuses, takes one when
    it comes back; the ticket as it is then."""
    was_active, is_active = before.status in ACTIVE_STATUSES, after.status in ACTIVE_STATUSES
    if was_active and not is_active:
        await release(session, after, now)
    elif is_active and not was_active:
        return await hold(session, after, now)
    return after
