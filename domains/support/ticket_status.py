"""Staff moving a ticket to another status, along the transitions the lifecycle allows
(domains/support/lifecycle.py); asking for the status it already has changes nothing."""

from domains.clock import SYSTEM_CLOCK, Clock
from domains.database import Database
from domains.errors import Forbidden, NotFound
from domains.identity.viewer import Viewer
from domains.support.lifecycle import change_status, check_transition, lock_ticket
from domains.support.models import TicketStatus
from domains.support.ticket import TicketRow


async def set_ticket_status(
    db: Database,
    viewer: Viewer,
    *,
    ticket_id: int,
    status: TicketStatus,
    clock: Clock = SYSTEM_CLOCK,
) -> TicketRow:
    if not viewer.is_staff:
        raise Forbidden("only staff change a ticket's status")
    async with db.transaction() as session:
        ticket = await lock_ticket(session, ticket_id)
        if ticket is None:
            raise NotFound("ticket")
        if status is ticket.status:
            return ticket
        check_transition(ticket, status)
        return await change_status(
            session, ticket, status, changed_by=viewer.user_id, now=clock.now()
        )
