"""Support resolvers: tickets and their threads, read as the viewer may."""

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

import strawberry
from strawberry import Info

from dataloaders.support import (
    TicketMessagesByIdLoader,
    TicketMessagesLoader,
    TicketPagesByCustomerIdLoader,
    TicketsByIdLoader,
)
from domains.customers.contract import ContractRow
from domains.customers.customer import CustomerRow
from domains.errors import Forbidden, InvalidInput, NotFound
from domains.events.cloudevent import CloudEvent
from domains.events.subject import CUSTOMER
from domains.identity.models import Role
from domains.keyset import Page, Window
from domains.support import sla_policy, ticket_message, ticket_status
from domains.support.models import TicketPriority, TicketStatus
from domains.support.thread import TicketMessageRow
from domains.support.ticket import TICKET_ORDER, TicketRow
from resolvers.access import load_owned
from resolvers.context import Context
from resolvers.customers import contract_by_pk, customer_by_pk
from resolvers.live import (
    CUSTOMER_ID,
    LiveEvent,
    Sends,
    Watched,
    audience,
    event_fields,
    live,
    watched_customer,
)
from resolvers.lookup import lookup
from resolvers.relay import Connection, connection_from_page, pk_of, window_from_arguments


async def ticket_by_pk(info: Info[Context], pk: int) -> TicketRow:
    """A customer's own ticket, or any for staff; else NOT_FOUND, so ids cannot be probed."""
    return await load_owned(info, info.context.loaders.of(TicketsByIdLoader), pk, "ticket")


async def ticket(info: Info[Context], id: strawberry.ID) -> TicketRow:
    return await ticket_by_pk(info, pk_of(id, "Ticket"))


def _ticket_page_key(root: CustomerRow, **window: Any) -> tuple[int, Window]:
    """`customer_tickets`' arguments as its loader's key; `window`: first, after, ..."""
    return root.id, window_from_arguments(TICKET_ORDER, **window)


def _ticket_connection(page: Page[TicketRow], *_: Any, **__: Any) -> Connection[TicketRow]:
    return connection_from_page(page, TICKET_ORDER)


@lookup(TicketPagesByCustomerIdLoader, _ticket_page_key, _ticket_connection)
async def customer_tickets(
    root: CustomerRow,
    info: Info[Context],
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
) -> Connection[TicketRow]:
    """Newest first."""


async def ticket_customer(root: TicketRow, info: Info[Context]) -> CustomerRow:
    return await customer_by_pk(info, root.customer_id)


async def ticket_contract(root: TicketRow, info: Info[Context]) -> ContractRow | None:
    if root.contract_id is None:
        return None
    return await contract_by_pk(info, root.contract_id)


async def ticket_messages(root: TicketRow, info: Info[Context]) -> list[TicketMessageRow]:
    """Oldest first; internal notes only for staff, who alone ask the loader for them."""
    staff = info.context.signed_in.is_staff
    return await info.context.loaders.of(TicketMessagesLoader).load((root.id, staff))


def ticket_sla_paused(root: TicketRow) -> bool:
    return root.sla_paused_at is not None


# --- Thread and lifecycle: messages, internal notes, status, SLA policies -------------


async def add_ticket_message(
    info: Info[Context], ticket_id: strawberry.ID, body: str
) -> ticket_message.PostedMessage:
    context = info.context
    posted = await ticket_message.add_ticket_message(
        context.db,
        context.signed_in,
        ticket_id=pk_of(ticket_id, "Ticket"),
        body=body,
        reopen_within=context.ticket_reopen_window,
        clock=context.clock,
    )
    context.loaders.of(TicketsByIdLoader).prime(posted.ticket.id, posted.ticket)
    return posted


async def add_internal_note(
    info: Info[Context], ticket_id: strawberry.ID, body: str
) -> ticket_message.PostedMessage:
    context = info.context
    posted = await ticket_message.add_internal_note(
        context.db,
        context.signed_in,
        ticket_id=pk_of(ticket_id, "Ticket"),
        body=body,
        clock=context.clock,
    )
    context.loaders.of(TicketsByIdLoader).prime(posted.ticket.id, posted.ticket)
    return posted


async def set_ticket_status(
    info: Info[Context], ticket_id: strawberry.ID, status: TicketStatus
) -> TicketRow:
    context = info.context
    ticket = await ticket_status.set_ticket_status(
        context.db,
        context.signed_in,
        ticket_id=pk_of(ticket_id, "Ticket"),
        status=status,
        clock=context.clock,
    )
    context.loaders.of(TicketsByIdLoader).prime(ticket.id, ticket)
    return ticket


async def sla_policies(info: Info[Context]) -> list[sla_policy.SlaPolicyRow]:
    if info.context.signed_in.role is not Role.ADMIN:
        raise Forbidden("only an admin reads SLA policies")
    async with info.context.db.read() as reader:
        return await sla_policy.sla_policies(reader)


async def update_sla_policy(
    info: Info[Context],
    priority: TicketPriority,
    first_response_minutes: int,
    resolution_minutes: int,
) -> sla_policy.SlaPolicyRow:
    return await sla_policy.update_sla_policy(
        info.context.db,
        info.context.signed_in,
        priority=priority,
        first_response_minutes=first_response_minutes,
        resolution_minutes=resolution_minutes,
        clock=info.context.clock,
    )


# --- Live updates: subscriptions' events, who may watch which, what each sends ----------
# Support's events are about the customer (`customer:<id>`); a stream of one ticket
# is its customer's stream filtered by `ticket_id`, and an internal note's event never
# reaches a customer's feed.

TICKET_EVENTS = "ticket."
TICKET_ID = strawberry.argument(
    description="One ticket to watch: a customer's own, or (staff) any; without it, the "
    "customer's tickets."
)
THREAD_TICKET_ID = strawberry.argument(description="The ticket whose thread to watch.")


class TicketChangeKind(StrEnum):
    """What happened to the ticket, from its event's type (`ticket.<kind>`)."""

    CREATED = "created"
    ASSIGNED = "assigned"
    STATUS_CHANGED = "status_changed"
    PRIORITY_CHANGED = "priority_changed"
    MESSAGE_ADDED = "message_added"


class TicketQueueChangeKind(StrEnum):
    NEW_UNASSIGNED = "new_unassigned"  # a new ticket nobody could take: it waits in the queue
    ASSIGNED_TO_ME = "assigned_to_me"


@dataclass(frozen=True, slots=True)
class TicketChange(LiveEvent):
    ticket_id: int
    change: TicketChangeKind


@dataclass(frozen=True, slots=True)
class TicketMessageChange(LiveEvent):
    ticket_id: int
    message_id: int


@dataclass(frozen=True, slots=True)
class TicketQueueChange(LiveEvent):
    ticket_id: int
    change: TicketQueueChangeKind


async def message_by_pk(info: Info[Context], pk: int) -> TicketMessageRow:
    """A message of a ticket the viewer may read; an internal note reads as missing to a
    customer, as the thread's own read never selects one for them."""
    message = await info.context.loaders.of(TicketMessagesByIdLoader).load(pk)
    if message is None or (message.internal and not info.context.signed_in.is_staff):
        raise NotFound("ticket message")
    await ticket_by_pk(info, message.ticket_id)
    return message


def _ticket_events(ticket_id: int | None, staff: bool) -> Sends:
    """The events of one ticket (or of every ticket of the subject, None), internal notes'
    for staff only."""

    def sends(event: CloudEvent, _context: Context) -> bool:
        data = event.data
        return (ticket_id is None or data["ticket_id"] == ticket_id) and (
            staff or not data.get("internal", False)
        )

    return sends


async def watched_tickets(
    info: Info[Context],
    ticket_id: Annotated[strawberry.ID | None, TICKET_ID] = None,
    customer_id: Annotated[strawberry.ID | None, CUSTOMER_ID] = None,
) -> str | Watched:
    """A customer's own tickets, or one of them; staff one customer's, or one ticket."""
    staff = info.context.signed_in.is_staff
    if ticket_id is None:
        subject = await watched_customer(info, customer_id)
        return subject if staff else Watched(subject, _ticket_events(None, staff))
    if customer_id is not None:
        raise InvalidInput("watch one ticket (ticketId) or one customer's (customerId), not both")
    ticket = await ticket_by_pk(info, pk_of(ticket_id, "Ticket"))
    return Watched(CUSTOMER.of(ticket.customer_id), _ticket_events(ticket.id, staff))


async def watched_thread(
    info: Info[Context], ticket_id: Annotated[strawberry.ID, THREAD_TICKET_ID]
) -> Watched:
    ticket = await ticket_by_pk(info, pk_of(ticket_id, "Ticket"))
    staff = info.context.signed_in.is_staff
    return Watched(CUSTOMER.of(ticket.customer_id), _ticket_events(ticket.id, staff))


_support_staff = audience(Role.OPERATOR, Role.ADMIN)


async def watched_queue(info: Info[Context]) -> Watched:
    """Staff: every customer's new tickets left unassigned, and the tickets given to the
    viewer. Whether a new ticket waits is read when its event is rendered: one assigned in
    the transaction that created it (or taken since) is not the queue's."""
    await _support_staff(info)
    viewer_id = info.context.signed_in.user_id

    async def sends(event: CloudEvent, context: Context) -> bool:
        if event.type == "ticket.assigned":
            return event.data["operator_id"] == viewer_id
        ticket = await context.loaders.of(TicketsByIdLoader).load(event.data["ticket_id"])
        return ticket is not None and ticket.assignee_id is None

    return Watched(None, sends)


def _ticket_change(event: CloudEvent) -> TicketChange:
    return TicketChange(
        **event_fields(event),
        ticket_id=event.data["ticket_id"],
        change=TicketChangeKind(event.type.removeprefix(TICKET_EVENTS)),
    )


def _message_change(event: CloudEvent) -> TicketMessageChange:
    return TicketMessageChange(
        **event_fields(event),
        ticket_id=event.data["ticket_id"],
        message_id=event.data["message_id"],
    )


def _queue_change(event: CloudEvent) -> TicketQueueChange:
    change = (
        TicketQueueChangeKind.ASSIGNED_TO_ME
        if event.type == "ticket.assigned"
        else TicketQueueChangeKind.NEW_UNASSIGNED
    )
    ticket_id = event.data["ticket_id"]
    return TicketQueueChange(**event_fields(event), ticket_id=ticket_id, change=change)


ticket_updated = live(
    {TICKET_EVENTS + kind for kind in TicketChangeKind}, _ticket_change, watched_tickets
)
ticket_message_added = live({"ticket.message_added"}, _message_change, watched_thread)
ticket_queue_changed = live({"ticket.created", "ticket.assigned"}, _queue_change, watched_queue)


async def change_ticket(
    root: TicketChange | TicketMessageChange | TicketQueueChange, info: Info[Context]
) -> TicketRow:
    return await ticket_by_pk(info, root.ticket_id)


async def change_message(root: TicketMessageChange, info: Info[Context]) -> TicketMessageRow:
    return await message_by_pk(info, root.message_id)
