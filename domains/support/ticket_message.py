"""Writing to a ticket's thread: a customer on their own ticket, staff on any, and staff's
internal notes. Each message moves the ticket as domains/support/lifecycle.py says:

- support's first public answer stamps `first_response_at`, and a new ticket becomes open;
- the customer's message brings a ticket waiting on them back to open (the SLA clock runs
  again), and reopens a resolved one within the reopen window; after it, or on a closed
  ticket, the message is refused (TICKET_CLOSED: open a new ticket) and nothing is written.

An internal note changes nothing a customer can see, not even the ticket's `updated_at`.
"""

from dataclasses import dataclass
from datetime import timedelta

from domains.clock import SYSTEM_CLOCK, Clock
from domains.database import Database
from domains.errors import Forbidden, InvalidInput, NotFound
from domains.identity.viewer import Viewer
from domains.support.errors import TicketClosed
from domains.support.lifecycle import (
    CLOSED,
    NEW,
    OPEN,
    PENDING,
    RESOLVED,
    change_status,
    lock_ticket,
)
from domains.support.models import AuthorKind
from domains.support.thread import MAX_BODY, TicketMessageRow, write_message
from domains.support.ticket import TicketRow


@dataclass(frozen=True, slots=True)
class PostedMessage:
    """The message as written, and its ticket as the message left it."""

    ticket: TicketRow
    message: TicketMessageRow


def checked_body(body: str) -> str:
    body = body.strip()
    if not body:
        raise InvalidInput("a message needs a body")
    if len(body) > MAX_BODY:
        raise InvalidInput(f"a message is at most {MAX_BODY} characters")
    return body


async def add_ticket_message(
    db: Database,
    viewer: Viewer,
    *,
    ticket_id: int,
    body: str,
    reopen_within: timedelta,
    clock: Clock = SYSTEM_CLOCK,
) -> PostedMessage:
    """A public message on the ticket, by its customer or by staff."""
    body = checked_body(body)
    async with db.transaction() as session:
        ticket = await lock_ticket(session, ticket_id)
        if ticket is None:
            raise NotFound("ticket")
        viewer.check_customer(ticket.customer_id, "ticket")
        if ticket.status is CLOSED:
            raise TicketClosed("the ticket is closed: open a new one")
        now = clock.now()
        if (
            not viewer.is_staff
            and ticket.status is RESOLVED
            and (ticket.resolved_at is None or now - ticket.resolved_at > reopen_within)
        ):
            raise TicketClosed(
                f"the ticket was resolved more than {reopen_within.days} days ago: open a new one"
            )
        author = AuthorKind.OPERATOR if viewer.is_staff else AuthorKind.CUSTOMER
        message = await write_message(
            session,
            ticket=ticket,
            author_kind=author,
            author_id=viewer.user_id,
            body=body,
            internal=False,
            now=now,
        )
        if viewer.is_staff:
            answered = ticket.first_response_at is None
            status = OPEN if ticket.status is NEW else ticket.status
        else:
            answered = False
            status = OPEN if ticket.status in (PENDING, RESOLVED) else ticket.status
        ticket = await change_status(
            session, ticket, status, changed_by=viewer.user_id, now=now, first_response=answered
        )
    return PostedMessage(ticket, message)


async def add_internal_note(
    db: Database, viewer: Viewer, *, ticket_id: int, body: str, clock: Clock = SYSTEM_CLOCK
) -> PostedMessage:
    """A note among staff on any ticket, closed ones too (what happened after); the ticket is
    left as it was, so nothing a customer reads changes."""
    if not viewer.is_staff:
        raise Forbidden("only staff write internal notes")
    body = checked_body(body)
    async with db.transaction() as session:
        ticket = await lock_ticket(session, ticket_id)
        if ticket is None:
            raise NotFound("ticket")
        message = await write_message(
            session,
            ticket=ticket,
            author_kind=AuthorKind.OPERATOR,
            author_id=viewer.user_id,
            body=body,
            internal=True,
            now=clock.now(),
        )
    return PostedMessage(ticket, message)
