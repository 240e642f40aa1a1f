"""Who works a ticket: the least-loaded operator with the skill, or the queue until one frees.

An operator holds at most `capacity` tickets at once; `open_tickets` counts those assigned
to them in new, open or pending_customer, and is changed only here, under the operator's
row lock, by an UPDATE whose WHERE re-checks the room it takes. Every assignment is a
`ticket_assignments` row and a `ticket.assigned` event.

Lock order (PostgreSQL; SQLite's single writer serialises instead): a ticket's row before
its operators' rows, and two operators in user id order. Two steps take locks out of that
order, and neither ever waits for a lock while holding one the other side waits for:
- The pick for a ticket (`assign_ticket`) takes the least-loaded operator with SKIP LOCKED,
  so concurrent tickets spread over the operators instead of queueing on one. Only when
  every operator with room is held by another transaction does it wait, for the best one,
  and only if it holds no operator yet: a new ticket's row is its creator's alone.
- The queue's drain (`drain_queue`) holds an operator and takes queued tickets with SKIP
  LOCKED: a ticket another transaction holds is left for the next drain.
One case remains, rare enough to leave to PostgreSQL's deadlock detection (the loser rolls
back whole, nothing half-written): a SKIP LOCKED pick that finds its row just filled
by a committed transaction skips it but keeps its lock, so the wait that may follow holds
one operator after all.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Integer, Select, bindparam, case, exists, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domains.reads import Read, Reader, any_of, group_by, row_columns, select_rows
from domains.support import events
from domains.support.errors import NotAnOperator, OperatorAtCapacity
from domains.support.models import (
    AssignmentReason,
    Presence,
    SupportOperator,
    SupportOperatorSkill,
    Ticket,
    TicketAssignment,
    TicketStatus,
)
from domains.support.operator import OperatorRow
from domains.support.priority import PRIORITIES
from domains.support.ticket import TicketRow
from domains.writes import RowsInsert, Write, writer

operators = SupportOperator.__table__
skills = SupportOperatorSkill.__table__
tickets = Ticket.__table__
assignments = TicketAssignment.__table__


# Queued: nobody assigned, nobody has answered or it is being worked (not waiting on the
# customer, not done). Literals, not parameters: a prepared statement's generic plan
# matches the partial queue index's predicate only against constants.
_QUEUED = (
    tickets.c.assignee_id.is_(None),
    tickets.c.status.in_(
        [literal_column(f"'{status.value}'") for status in (TicketStatus.NEW, TicketStatus.OPEN)]
    ),
)
# Operators already locked by this unit of work (its session.info).
_LOCKED = "kabinet.support.operators_locked"


@dataclass(frozen=True, slots=True)
class Assignment:
    ticket: TicketRow
    operator: OperatorRow


def _has_skill(category_bind: str) -> object:
    return exists().where(
        skills.c.user_id == operators.c.user_id,
        skills.c.category == bindparam(category_bind, type_=skills.c.category.type),
    )


_AVAILABLE = (
    operators.c.presence == Presence.ONLINE,
    operators.c.open_tickets < operators.c.capacity,
)
# Fewest open tickets; ties to the one assigned least recently (never assigned: first).
_LEAST_LOADED = (
    operators.c.open_tickets,
    operators.c.last_assigned_at.asc().nulls_first(),
    operators.c.user_id,
)


def _candidates() -> Select:
    return (
        select_rows(OperatorRow, operators)
        .where(*_AVAILABLE, _has_skill("category"))
        .order_by(*_LEAST_LOADED)
        .limit(1)
    )


_PICK = Write(_candidates().with_for_update(skip_locked=True), OperatorRow)
_BEST = Read(OperatorRow, _candidates())
_LOCK_OPERATOR = Write(
    select_rows(OperatorRow, operators)
    .where(operators.c.user_id == bindparam("operator_id"))
    .with_for_update(),
    OperatorRow,
)
_LOCK_OPERATORS = Write(
    select_rows(OperatorRow, operators)
    .where(any_of(operators.c.user_id, "operator_ids"))
    .order_by(operators.c.user_id)
    .with_for_update(),
    OperatorRow,
)
# Takes `taken` slots if they are free (re-checked on the row's latest version).
_TAKE = Write(
    update(operators)
    .where(
        operators.c.user_id == bindparam("operator_id"),
        operators.c.open_tickets + bindparam("taken", type_=Integer) <= operators.c.capacity,
    )
    .values(
        open_tickets=operators.c.open_tickets + bindparam("taken", type_=Integer),
        last_assigned_at=bindparam("now"),
    )
    .returning(*row_columns(OperatorRow, operators)),
    OperatorRow,
)
_FREE = Write(
    update(operators)
    .where(operators.c.user_id == bindparam("operator_id"), operators.c.open_tickets > 0)
    .values(open_tickets=operators.c.open_tickets - 1)
    .returning(*row_columns(OperatorRow, operators)),
    OperatorRow,
)
_SET_ASSIGNEE = Write(
    update(tickets)
    .where(any_of(tickets.c.id, "ticket_ids"))
    .values(assignee_id=bindparam("operator_id"), updated_at=bindparam("now"))
    .returning(*row_columns(TicketRow, tickets)),
    TicketRow,
)
_RECORD = RowsInsert(
    assignments,
    ("ticket_id", "operator_id", "assigned_by", "reason"),
    shared=("assigned_at",),
)
# Highest priority first, then the oldest.
_URGENCY = case(
    {priority: rank for rank, priority in enumerate(PRIORITIES)}, value=tickets.c.priority
)
_QUEUED_FOR = Write(
    select_rows(TicketRow, tickets)
    .where(
        *_QUEUED,
        tickets.c.category.in_(
            select(skills.c.category).where(skills.c.user_id == bindparam("operator_id"))
        ),
    )
    .order_by(_URGENCY.desc(), tickets.c.created_at, tickets.c.id)
    .limit(bindparam("room", type_=Integer))
    .with_for_update(of=tickets, skip_locked=True),
    TicketRow,
)


async def assign_ticket(
    session: AsyncSession, ticket: TicketRow, now: datetime, *, reason: AssignmentReason
) -> Assignment | None:
    """Gives `ticket` (unassigned, in the caller's unit of work) to the online operator with
    its category's skill who has the fewest open tickets; None when nobody has room: the
    ticket stays queued until `drain_queue` hands it out."""
    tx = writer(session)
    found = await tx.fetch(_PICK, category=ticket.category)
    if not found and not session.info.get(_LOCKED):
        # Everyone with room may be held by transactions under way: wait for the best.
        best = await tx.fetch(_BEST, category=ticket.category)
        if best:
            found = await tx.fetch(_LOCK_OPERATOR, operator_id=best[0].user_id)
    if not found:
        return None
    # Locked: the row as it is now, which the wait may have changed.
    [operator] = found
    _locked(session, operator.user_id)
    if operator.presence is not Presence.ONLINE or operator.open_tickets >= operator.capacity:
        return None
    [taken] = await tx.fetch(_TAKE, operator_id=operator.user_id, taken=1, now=now)
    [assigned] = await _give(session, [ticket], taken, now, reason, None)
    return Assignment(assigned, taken)


async def assign_to(
    session: AsyncSession,
    ticket: TicketRow,
    operator_id: int,
    now: datetime,
    *,
    assigned_by: int,
) -> Assignment:
    """Staff give a held ticket to this operator (whatever their presence and skills), who
    must have room; the previous assignee's slot frees and their queue drains. The caller
    holds the ticket's lock."""
    tx = writer(session)
    previous = ticket.assignee_id
    ids = sorted({operator_id, *([previous] if previous is not None else [])})
    locked = {row.user_id: row for row in await tx.fetch(_LOCK_OPERATORS, operator_ids=ids)}
    for user_id in locked:
        _locked(session, user_id)
    if operator_id not in locked:
        raise NotAnOperator("the user named is not a support operator")
    taken = await tx.fetch(_TAKE, operator_id=operator_id, taken=1, now=now)
    if not taken:
        raise OperatorAtCapacity("the operator has no room for another ticket")
    [assigned] = await _give(session, [ticket], taken[0], now, AssignmentReason.MANUAL, assigned_by)
    if previous is not None and previous in locked:
        await writer(session).fetch(_FREE, operator_id=previous)
        await drain_queue(session, previous, now)
    return Assignment(assigned, taken[0])


async def release(session: AsyncSession, ticket: TicketRow, now: datetime) -> list[TicketRow]:
    """Frees the slot `ticket` held of its assignee's capacity (the ticket left new, open and
    pending_customer, or is about to go to someone else), and lets the assignee's queue
    fill it: the tickets so assigned. The caller holds the ticket's lock; its
    `assignee_id` stays as it is (who resolved it), for the caller to change if it will."""
    if ticket.assignee_id is None:
        return []
    freed = await writer(session).fetch(_FREE, operator_id=ticket.assignee_id)
    _locked(session, ticket.assignee_id)
    if not freed:
        return []
    return await drain_queue(session, ticket.assignee_id, now)


async def drain_queue(session: AsyncSession, operator_id: int, now: datetime) -> list[TicketRow]:
    """Fills the operator's free capacity from the queue, highest priority then oldest,
    among the categories they handle, if they are online: the tickets so assigned. Called
    when an operator comes online or frees a slot, in that change's unit of work."""
    tx = writer(session)
    found = await tx.fetch(_LOCK_OPERATOR, operator_id=operator_id)
    _locked(session, operator_id)
    if not found or found[0].presence is not Presence.ONLINE:
        return []
    operator = found[0]
    room = operator.capacity - operator.open_tickets
    if room <= 0:
        return []
    queued = await tx.fetch(_QUEUED_FOR, operator_id=operator_id, room=room)
    if not queued:
        return []
    [taken] = await tx.fetch(_TAKE, operator_id=operator_id, taken=len(queued), now=now)
    return await _give(session, queued, taken, now, AssignmentReason.QUEUE, None)


async def _give(
    session: AsyncSession,
    given: Sequence[TicketRow],
    operator: OperatorRow,
    now: datetime,
    reason: AssignmentReason,
    assigned_by: int | None,
) -> list[TicketRow]:
    """Records the tickets as the operator's (whose slots the caller took): the tickets'
    assignee, an assignment row and a `ticket.assigned` event each, in the given order."""
    tx = writer(session)
    previous = {ticket.id: ticket.assignee_id for ticket in given}
    updated = await tx.fetch(
        _SET_ASSIGNEE,
        ticket_ids=[ticket.id for ticket in given],
        operator_id=operator.user_id,
        now=now,
    )
    by_id = {ticket.id: ticket for ticket in updated}
    assigned = [by_id[ticket.id] for ticket in given]
    await tx.insert(
        _RECORD,
        [
            {
                "ticket_id": ticket.id,
                "operator_id": operator.user_id,
                "assigned_by": assigned_by,
                "reason": reason,
            }
            for ticket in assigned
        ],
        assigned_at=now,
    )
    for ticket in assigned:
        await events.ticket_assigned(
            session,
            ticket_id=ticket.id,
            customer_id=ticket.customer_id,
            operator_id=operator.user_id,
            previous_operator_id=previous[ticket.id],
            reason=reason,
            assigned_by=assigned_by,
            priority=ticket.priority,
            category=ticket.category,
        )
    return assigned


def _locked(session: AsyncSession, operator_id: int) -> None:
    session.info.setdefault(_LOCKED, set()).add(operator_id)


@dataclass(frozen=True, slots=True)
class TicketAssignmentRow:
    id: int
    ticket_id: int
    operator_id: int
    assigned_by: int | None
    reason: AssignmentReason
    assigned_at: datetime


ASSIGNMENTS_BY_TICKET_ID = Read(
    TicketAssignmentRow,
    select_rows(TicketAssignmentRow, assignments)
    .where(any_of(assignments.c.ticket_id, "ticket_ids"))
    .order_by(assignments.c.ticket_id, assignments.c.id),
)


async def assignments_by_ticket_ids(
    reader: Reader, ticket_ids: Sequence[int]
) -> dict[int, list[TicketAssignmentRow]]:
    """Each ticket's assignments, oldest first."""
    rows = await reader.fetch(ASSIGNMENTS_BY_TICKET_ID, ticket_ids=ticket_ids)
    return group_by(rows, "ticket_id", ticket_ids)
