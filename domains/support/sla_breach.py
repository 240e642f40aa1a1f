"""SLA breaches: finding the tickets past a due time, once per target, and escalating them.

A ticket breaches its first-response target when support has not answered by
`first_response_due_at`, its resolution target when it is not resolved by
`resolution_due_at`; only while new or open: a ticket waiting on the customer has its clock
stopped (its due times move when it comes back, domains/support/lifecycle.py), and a
resolved or closed one has met its targets or is no longer worked. Each breach stamps its
`*_breached_at` in the UPDATE that finds it, so a second pass finds nothing and
`ticket.sla_breached` is written once per target and ticket, in the transaction that stamped
it.

Escalation, in the same transaction: the priority goes up one step (capped at urgent;
`ticket.priority_changed`, reason `escalation`), and a ticket whose assignee is away or
offline goes to an online operator with the skill and room, or back to the queue
(domains/support/assignment.py). A ticket breaching both targets escalates twice.

Each batch is one transaction, one UPDATE over tickets picked in (due time, id) order after
the previous batch's last, their row locks taken with SKIP LOCKED, as the overdue marker
does (domains/billing/invoice_overdue.py): a ticket an action holds (a reply being written)
is left for the next pass, and the pass never waits on a ticket while holding another. It
then locks the batch's assignees in user id order, before any of them changes, so moving
tickets between operators waits for no operator while holding one (assignment's order).
"""

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Integer,
    bindparam,
    literal_column,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from domains.clock import SYSTEM_CLOCK, Clock
from domains.database import Database
from domains.reads import row_columns
from domains.support import events
from domains.support.assignment import lock_operators, move_off_absent
from domains.support.models import TicketStatus
from domains.support.priority import raised
from domains.support.ticket import TicketRow, tickets
from domains.writes import Write, writer

BATCH_SIZE = 500

_TIME = tickets.c.created_at.type
# Worked, with the clock running. Literals: the plan of a prepared statement then knows them.
_RUNNING = (
    tickets.c.status.in_(
        [literal_column(f"'{status.value}'") for status in (TicketStatus.NEW, TicketStatus.OPEN)]
    ),
    tickets.c.sla_paused_at.is_(None),
)


@dataclass(frozen=True, slots=True)
class Target:
    """One SLA target: its name on the event, its due and breach columns, and what says it
    is still unmet besides the status."""

    name: str
    due: Column
    breached: Column
    unmet: tuple[ColumnElement[bool], ...]

    def due_at(self, ticket: TicketRow) -> datetime:
        return getattr(ticket, self.due.name)


FIRST_RESPONSE = Target(
    "first_response",
    tickets.c.first_response_due_at,
    tickets.c.first_response_breached_at,
    (tickets.c.first_response_at.is_(None),),
)
RESOLUTION = Target("resolution", tickets.c.resolution_due_at, tickets.c.resolution_breached_at, ())
TARGETS = (FIRST_RESPONSE, RESOLUTION)


def _marking(target: Target) -> Write[TicketRow]:
    pick = (
        select(tickets.c.id)
        .where(
            *_RUNNING,
            *target.unmet,
            target.breached.is_(None),
            target.due <= bindparam("due_by", type_=_TIME),
            tuple_(target.due, tickets.c.id)
            > tuple_(bindparam("after_due", type_=_TIME), bindparam("after_id", type_=BigInteger)),
        )
        .order_by(target.due, tickets.c.id)
        .limit(bindparam("size", type_=Integer))
        .with_for_update(skip_locked=True)
    )
    return Write(
        update(tickets)
        .where(tickets.c.id.in_(pick.scalar_subquery()))
        .values({target.breached.name: bindparam("breached_at", type_=_TIME)})
        .returning(*row_columns(TicketRow, tickets)),
        TicketRow,
    )


_MARK = {target.name: _marking(target) for target in TARGETS}
_RAISE = Write(
    update(tickets)
    .where(tickets.c.id == bindparam("ticket_id"))
    .values(priority=bindparam("priority"), updated_at=bindparam("updated_at"))
)


@dataclass(frozen=True, slots=True)
class BreachSweep:
    """What a pass found and did: breaches per target, priorities raised, tickets moved off
    an absent assignee."""

    first_response: int = 0
    resolution: int = 0
    raised: int = 0
    reassigned: int = 0


async def escalate(session: AsyncSession, ticket: TicketRow, now: datetime) -> tuple[bool, bool]:
    """Raises the locked, breached ticket's priority a step (an urgent one stays urgent),
    and moves it off an assignee who is away or offline: (raised, reassigned)."""
    higher = raised(ticket.priority, 1)
    up = higher is not ticket.priority
    if up:
        await writer(session).execute(_RAISE, ticket_id=ticket.id, priority=higher, updated_at=now)
        await events.priority_changed(
            session,
            ticket_id=ticket.id,
            customer_id=ticket.customer_id,
            old_priority=ticket.priority,
            new_priority=higher,
            reason="escalation",
        )
        ticket = replace(ticket, priority=higher, updated_at=now)
    moved = await move_off_absent(session, ticket, now)
    return up, moved is not None


async def detect_breaches(
    db: Database, *, clock: Clock = SYSTEM_CLOCK, batch_size: int = BATCH_SIZE
) -> BreachSweep:
    """Stamps, reports and escalates every breach due by now, a batch per transaction."""
    if batch_size < 1:
        raise ValueError(f"a batch holds at least one ticket, not {batch_size}")
    now = clock.now()
    found = dict.fromkeys((target.name for target in TARGETS), 0)
    raised_count = reassigned = 0
    for target in TARGETS:
        after_due, after_id = datetime.min.replace(tzinfo=UTC), 0
        while True:
            async with db.transaction() as session:
                rows = await writer(session).fetch(
                    _MARK[target.name],
                    due_by=now,
                    after_due=after_due,
                    after_id=after_id,
                    size=batch_size,
                    breached_at=now,
                )
                # The batch's assignees first, in id order (domains/support/assignment.py).
                await lock_operators(
                    session, [row.assignee_id for row in rows if row.assignee_id is not None]
                )
                for row in rows:
                    await events.sla_breached(
                        session,
                        ticket_id=row.id,
                        customer_id=row.customer_id,
                        target=target.name,
                        due_at=target.due_at(row),
                        priority=row.priority,
                        assignee_id=row.assignee_id,
                    )
                    up, moved = await escalate(session, row, now)
                    raised_count += up
                    reassigned += moved
            found[target.name] += len(rows)
            if len(rows) < batch_size:
                break
            after_due, after_id = max((target.due_at(row), row.id) for row in rows)
    return BreachSweep(found[FIRST_RESPONSE.name], found[RESOLUTION.name], raised_count, reassigned)
