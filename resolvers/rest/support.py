"""REST routes of support: the seed's flow 2.4 (the client opens a ticket with
`POST /support/tickets`), the caller's tickets and one ticket's thread, and writing to it.

The same domain actions as createTicket and addTicketMessage; a ticket is read under the
one rule (a customer's own, any for staff), and its thread holds internal notes for staff
only, as every read of it does.
"""

from pydantic import AwareDatetime, Field

from dataloaders.support import (
    TicketMessagesLoader,
    TicketPagesByCustomerIdLoader,
    TicketsByIdLoader,
)
from domains.errors import Forbidden, NotFound
from domains.keyset import MAX_PAGE_SIZE
from domains.support.models import (
    AuthorKind,
    TicketCategory,
    TicketChannel,
    TicketPriority,
    TicketStatus,
)
from domains.support.thread import TicketMessageRow
from domains.support.ticket import TICKET_ORDER, TicketRow
from domains.support.ticket_create import create_ticket
from domains.support.ticket_message import add_ticket_message
from resolvers.relay import connection_from_page, pk_of, to_global_id, window_from_arguments
from resolvers.rest import Answer, Body, PageInfo, Params, RestAnswer, RestCall, RestRoute

# What GraphQL's cost counts for a plain list (a thread): ten items.
LIST_ITEMS = 10


class TicketsQuery(Params):
    first: int | None = Field(None, ge=0, le=MAX_PAGE_SIZE, description="page size (20)")
    after: str | None = Field(None, max_length=512, description="the end_cursor of a page")


class NewTicket(Body):
    category: TicketCategory
    subject: str = Field(description="at most 200 characters")
    body: str = Field(description="the first message, at most 10,000 characters")
    contract_id: str | None = Field(
        None, max_length=512, description="the global id of the contract it is about"
    )
    channel: TicketChannel | None = Field(
        None, description="customers: web (the default) or mobile; staff: staff"
    )
    customer_id: str | None = Field(
        None, max_length=512, description="staff only: the customer's global id"
    )


class NewMessage(Body):
    body: str = Field(description="at most 10,000 characters")


class Ticket(Answer):
    id: str
    subject: str
    category: TicketCategory
    priority: TicketPriority
    status: TicketStatus
    channel: TicketChannel
    contract_id: str | None
    created_at: AwareDatetime
    updated_at: AwareDatetime
    first_response_at: AwareDatetime | None
    resolved_at: AwareDatetime | None
    closed_at: AwareDatetime | None
    first_response_due_at: AwareDatetime | None
    resolution_due_at: AwareDatetime | None
    sla_paused: bool = Field(description="while the ticket waits on the customer")


class TicketMessage(Answer):
    id: str
    author_kind: AuthorKind
    body: str
    internal: bool = Field(description="an operators' note: only staff ever read one")
    created_at: AwareDatetime


class TicketsAnswer(Answer):
    tickets: list[Ticket]
    page_info: PageInfo


class TicketAnswer(Answer):
    ticket: Ticket
    messages: list[TicketMessage] = Field(description="the thread, oldest first")


class MessageAnswer(Answer):
    message: TicketMessage
    ticket: Ticket = Field(description="as the message left it (a reply opens a new one)")


def _ticket(row: TicketRow) -> Ticket:
    return Ticket(
        id=to_global_id("Ticket", row.id),
        subject=row.subject,
        category=row.category,
        priority=row.priority,
        status=row.status,
        channel=row.channel,
        contract_id=None if row.contract_id is None else to_global_id("Contract", row.contract_id),
        created_at=row.created_at,
        updated_at=row.updated_at,
        first_response_at=row.first_response_at,
        resolved_at=row.resolved_at,
        closed_at=row.closed_at,
        first_response_due_at=row.first_response_due_at,
        resolution_due_at=row.resolution_due_at,
        sla_paused=row.sla_paused_at is not None,
    )


def _message(row: TicketMessageRow) -> TicketMessage:
    return TicketMessage(
        id=to_global_id("TicketMessage", row.id),
        author_kind=row.author_kind,
        body=row.body,
        internal=row.internal,
        created_at=row.created_at,
    )


async def support_tickets(call: RestCall) -> RestAnswer:
    """The viewer's tickets, newest first, a page at a time."""
    query: TicketsQuery = call.params
    context = call.context
    customer_id = context.signed_in.customer_id
    if customer_id is None:
        raise Forbidden("staff accounts have no tickets; use customer(id:) { tickets }")
    window = window_from_arguments(TICKET_ORDER, query.first, query.after)
    # What the same read costs through GraphQL: the list, and each ticket's fields.
    await call.charge("query", 1 + len(Ticket.model_fields) * window.limit)
    page = await context.loaders.of(TicketPagesByCustomerIdLoader).load((customer_id, window))
    connection = connection_from_page(page, TICKET_ORDER)
    return RestAnswer(
        TicketsAnswer(
            tickets=[_ticket(row) for row in page.rows],
            page_info=PageInfo(
                has_next_page=connection.page_info.has_next_page,
                end_cursor=connection.page_info.end_cursor,
            ),
        )
    )


async def support_ticket(call: RestCall) -> RestAnswer:
    """One ticket and its thread: a customer's own (another's is 404), any for staff."""
    context = call.context
    ticket_id = pk_of(call.path["id"], "Ticket")
    await call.charge(
        "query", 1 + len(Ticket.model_fields) + LIST_ITEMS * len(TicketMessage.model_fields)
    )
    ticket = await context.loaders.of(TicketsByIdLoader).load(ticket_id)
    if ticket is None:
        raise NotFound("ticket")
    context.signed_in.check_customer(ticket.customer_id, "ticket")
    staff = context.signed_in.is_staff
    thread = await context.loaders.of(TicketMessagesLoader).load((ticket.id, staff))
    return RestAnswer(
        TicketAnswer(ticket=_ticket(ticket), messages=[_message(row) for row in thread]),
        headers={"Cache-Control": "no-store"},
    )


async def support_open_ticket(call: RestCall) -> RestAnswer:
    """Open a ticket: its priority from the rules, an operator assigned (or the queue).

    201 with the ticket as committed and its first message. Errors: 400 malformed or
    refused input (empty subject, a body over the limit, an unknown category), 404 a
    contract (or, for staff, a customer) that is not the caller's to name.
    """
    request: NewTicket = call.body
    context = call.context
    viewer = context.signed_in
    contract_id = None if request.contract_id is None else pk_of(request.contract_id, "Contract")
    customer_id = None if request.customer_id is None else pk_of(request.customer_id, "Customer")
    channel = request.channel or (TicketChannel.STAFF if viewer.is_staff else TicketChannel.WEB)
    await call.charge("mutation", 1)
    created = await create_ticket(
        context.db,
        viewer,
        category=request.category,
        subject=request.subject,
        body=request.body,
        contract_id=contract_id,
        customer_id=customer_id,
        channel=channel,
        clock=context.clock,
    )
    return RestAnswer(
        TicketAnswer(ticket=_ticket(created.ticket), messages=[_message(created.message)]),
        status=201,
        headers={"Cache-Control": "no-store"},
    )


async def support_post_message(call: RestCall) -> RestAnswer:
    """Write to a ticket's thread: its customer, or staff (a reply).

    201 with the message and the ticket as it left it. Errors: 400 an empty body or one
    over the limit, 404 not the caller's ticket, 422 TICKET_CLOSED (closed, or resolved
    longer ago than the reopen window: open a new ticket).
    """
    request: NewMessage = call.body
    context = call.context
    ticket_id = pk_of(call.path["id"], "Ticket")
    await call.charge("mutation", 1)
    posted = await add_ticket_message(
        context.db,
        context.signed_in,
        ticket_id=ticket_id,
        body=request.body,
        reopen_within=context.ticket_reopen_window,
        clock=context.clock,
    )
    return RestAnswer(
        MessageAnswer(message=_message(posted.message), ticket=_ticket(posted.ticket)),
        status=201,
        headers={"Cache-Control": "no-store"},
    )


ROUTES = (
    RestRoute(
        "GET",
        "/support/tickets",
        support_tickets,
        answers={200: TicketsAnswer},
        params=TicketsQuery,
        errors=("FORBIDDEN",),
    ),
    RestRoute(
        "POST",
        "/support/tickets",
        support_open_ticket,
        answers={201: TicketAnswer},
        body=NewTicket,
        errors=("NOT_FOUND",),
    ),
    RestRoute(
        "GET",
        "/support/tickets/{id}",
        support_ticket,
        answers={200: TicketAnswer},
        errors=("BAD_USER_INPUT", "NOT_FOUND"),
    ),
    RestRoute(
        "POST",
        "/support/tickets/{id}/messages",
        support_post_message,
        answers={201: MessageAnswer},
        body=NewMessage,
        errors=("NOT_FOUND", "TICKET_CLOSED"),
    ),
)

# A well-formed message the ticket's lifecycle refuses is 422, as billing's rule refusals.
ERROR_STATUS = {"TICKET_CLOSED": 422}
