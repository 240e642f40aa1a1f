"""Staff reassign a ticket to an operator; every assignment is recorded."""

from sqlalchemy import bindparam

from domains.clock import SYSTEM_CLOCK, Clock
from domains.database import Database
from domains.errors import Forbidden, InvalidInput, NotFound
from domains.identity.viewer import Viewer
from domains.reads import select_rows
from domains.support.assignment import Assignment, assign_to
from domains.support.models import ACTIVE_STATUSES
from domains.support.ticket import TicketRow, tickets
from domains.writes import Write, writer

_LOCK_TICKET = Write(
    select_rows(TicketRow, tickets).where(tickets.c.id == bindparam("ticket_id")).with_for_update(),
    TicketRow,
)


async def reassign_ticket(
    db: Database,
    viewer: Viewer,
    *,
    ticket_id: int,
    operator_id: int,
    clock: Clock = SYSTEM_CLOCK,
) -> Assignment:
    """Gives an open ticket to the operator named, who must have room (presence and skills
    are staff's call); the previous assignee's slot goes to their queue."""
    if not viewer.is_staff:
        raise Forbidden("only staff assign tickets")
    now = clock.now()
    async with db.transaction() as session:
        # The ticket before its operators: the documented order (domains/support/assignment.py).
        found = await writer(session).fetch(_LOCK_TICKET, ticket_id=ticket_id)
        if not found:
            raise NotFound("ticket")
        [ticket] = found
        if ticket.status not in ACTIVE_STATUSES:
            raise InvalidInput(f"the ticket is {ticket.status.value}: it needs nobody assigned")
        if ticket.assignee_id == operator_id:
            raise InvalidInput("the ticket is theirs already")
        return await assign_to(session, ticket, operator_id, now, assigned_by=viewer.user_id)
