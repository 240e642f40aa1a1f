"""Closing tickets left resolved: a resolved ticket nobody reopened closes by itself
`KABINET_TICKET_AUTOCLOSE_DAYS` after its resolution, with its `ticket.status_changed`
(changed_by null: the system).

A resolved ticket holds no slot of its assignee's capacity, so closing it is one UPDATE per
batch, over tickets picked in (resolved_at, id) order after the previous batch's last with
SKIP LOCKED, as the overdue marker does: a ticket a customer is reopening right now is left
for the next pass, which finds it open (not picked) or still resolved (closed then). A
closed ticket is never picked again, so each is closed, and its event written, once.
"""

from datetime import UTC, datetime, timedelta

from sqlalchemy import BigInteger, Integer, bindparam, literal_column, select, tuple_, update

from domains.clock import SYSTEM_CLOCK, Clock
from domains.database import Database
from domains.reads import row_columns
from domains.support import events
from domains.support.models import TicketStatus
from domains.support.ticket import TicketRow, tickets
from domains.writes import Write, writer

BATCH_SIZE = 500

_TIME = tickets.c.created_at.type
_PICK = (
    select(tickets.c.id)
    .where(
        tickets.c.status == literal_column(f"'{TicketStatus.RESOLVED.value}'"),
        tickets.c.resolved_at <= bindparam("resolved_by", type_=_TIME),
        tuple_(tickets.c.resolved_at, tickets.c.id)
        > tuple_(bindparam("after_resolved", type_=_TIME), bindparam("after_id", type_=BigInteger)),
    )
    .order_by(tickets.c.resolved_at, tickets.c.id)
    .limit(bindparam("size", type_=Integer))
    .with_for_update(skip_locked=True)
)
_CLOSE = Write(
    update(tickets)
    .where(tickets.c.id.in_(_PICK.scalar_subquery()))
    .values(
        status=TicketStatus.CLOSED,
        closed_at=bindparam("now_at", type_=_TIME),
        updated_at=bindparam("now_at", type_=_TIME),
    )
    .returning(*row_columns(TicketRow, tickets)),
    TicketRow,
)


async def close_resolved_tickets(
    db: Database,
    *,
    after: timedelta,
    clock: Clock = SYSTEM_CLOCK,
    batch_size: int = BATCH_SIZE,
) -> int:
    """Closes every ticket resolved at least `after` ago, a batch per transaction; returns
    how many it closed."""
    if batch_size < 1:
        raise ValueError(f"a batch holds at least one ticket, not {batch_size}")
    now = clock.now()
    after_resolved, after_id = datetime.min.replace(tzinfo=UTC), 0
    closed = 0
    while True:
        async with db.transaction() as session:
            rows = await writer(session).fetch(
                _CLOSE,
                resolved_by=now - after,
                after_resolved=after_resolved,
                after_id=after_id,
                size=batch_size,
                now_at=now,
            )
            for row in rows:
                await events.status_changed(
                    session,
                    ticket_id=row.id,
                    customer_id=row.customer_id,
                    old_status=TicketStatus.RESOLVED,
                    new_status=TicketStatus.CLOSED,
                    changed_by=None,
                    priority=row.priority,
                    category=row.category,
                )
        closed += len(rows)
        if len(rows) < batch_size:
            return closed
        # resolved_at is unchanged by the close: the keyset is the pick's order.
        after_resolved, after_id = max((row.resolved_at, row.id) for row in rows)  # type: ignore[type-var]
