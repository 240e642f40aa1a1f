"""The support subgraph: customers' tickets and their threads."""

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from domains.support.models import (
    AuthorKind,
    TicketCategory,
    TicketChannel,
    TicketPriority,
    TicketStatus,
)
from domains.support.ticket import TicketRow
from resolvers import support as support_resolvers
from resolvers.relay import pk_of
from resolvers.rest import support as support_rest
from schema.access import Access
from schema.plugin import Domain
from schema.shared import Connection, Node, is_row, node_id

if TYPE_CHECKING:
    from schema.customers import Contract
    from schema.entities import Customer

CustomerRef = Annotated["Customer", strawberry.lazy("schema.entities")]
ContractRef = Annotated["Contract", strawberry.lazy("schema.customers")]

Category = strawberry.enum(TicketCategory, name="TicketCategory")
Priority = strawberry.enum(TicketPriority, name="TicketPriority")
Status = strawberry.enum(TicketStatus, name="TicketStatus")
Channel = strawberry.enum(TicketChannel, name="TicketChannel")
Author = strawberry.enum(AuthorKind, name="TicketAuthorKind")


@strawberry.type(description="One message of a ticket's thread.")
class TicketMessage:
    id: strawberry.ID = node_id("TicketMessage")
    author_kind: Author = strawberry.field(
        description="Who wrote it: the customer, support, or the system."
    )
    body: str
    internal: bool = strawberry.field(description="An operators' note: only staff ever read one.")
    created_at: datetime


@strawberry.federation.type(keys=["id"], description="A customer's support request and its thread.")
class Ticket(Node):
    id: strawberry.ID = node_id("Ticket")
    subject: str
    category: Category
    priority: Priority
    status: Status
    channel: Channel = strawberry.field(description="Where it was opened.")
    created_at: datetime
    updated_at: datetime
    first_response_at: datetime | None = strawberry.field(
        description="When support first answered the customer."
    )
    resolved_at: datetime | None
    closed_at: datetime | None
    first_response_due_at: datetime | None = strawberry.field(
        description="When the first answer is due under the priority's SLA."
    )
    resolution_due_at: datetime | None = strawberry.field(
        description="When resolution is due under the priority's SLA."
    )
    sla_paused: bool = strawberry.field(
        resolver=support_resolvers.ticket_sla_paused,
        description="True while the ticket waits on the customer: the due times stand still.",
    )
    customer: CustomerRef = strawberry.field(resolver=support_resolvers.ticket_customer)
    contract: ContractRef | None = strawberry.field(
        resolver=support_resolvers.ticket_contract, description="The contract it is about, if any."
    )
    messages: list[TicketMessage] = strawberry.field(
        resolver=support_resolvers.ticket_messages,
        description="The thread, oldest first (internal notes for staff only).",
    )

    is_type_of = is_row(TicketRow)

    @classmethod
    async def resolve_reference(cls, info: strawberry.Info, id: strawberry.ID) -> TicketRow:
        return await support_resolvers.ticket_by_pk(info, pk_of(id, "Ticket"))


@strawberry.type
class CustomerSupportFields:
    """The support subgraph's part of `Customer`."""

    tickets: Connection[Ticket] = strawberry.field(
        resolver=support_resolvers.customer_tickets, description="Newest first."
    )


# --- Thread and lifecycle: messages, internal notes, status, SLA policies -------------


@strawberry.type(description="A message just written, and its ticket as the message left it.")
class TicketMessagePayload:
    ticket: Ticket
    message: TicketMessage


@strawberry.type(
    description="A priority's service-level targets, in minutes; a ticket's due times are "
    "set from its priority's policy when it is created (and move while it waits on the "
    "customer)."
)
class SlaPolicy:
    priority: Priority
    first_response_minutes: int = strawberry.field(description="Until support first answers.")
    resolution_minutes: int = strawberry.field(description="Until the ticket is resolved.")
    updated_at: datetime


@strawberry.type
class ThreadQuery:
    sla_policies: list[SlaPolicy] = strawberry.field(
        resolver=support_resolvers.sla_policies,
        description="Admins: every priority's SLA policy, the most urgent first.",
    )


@strawberry.type
class ThreadMutation:
    @strawberry.mutation(
        description="Write to a ticket's thread: a customer on their own ticket, staff on any. "
        "Support's first answer opens a new ticket; the customer's reopens one waiting on "
        "them, or one resolved within KABINET_TICKET_REOPEN_DAYS (after that, or once "
        "closed: TICKET_CLOSED)."
    )
    async def add_ticket_message(
        self, info: strawberry.Info, ticket_id: strawberry.ID, body: str
    ) -> TicketMessagePayload:
        return await support_resolvers.add_ticket_message(info, ticket_id, body)  # type: ignore[return-value]

    @strawberry.mutation(
        description="Staff: a note on the ticket only staff ever read; the ticket is left as "
        "it was."
    )
    async def add_internal_note(
        self, info: strawberry.Info, ticket_id: strawberry.ID, body: str
    ) -> TicketMessagePayload:
        return await support_resolvers.add_internal_note(info, ticket_id, body)  # type: ignore[return-value]

    @strawberry.mutation(
        description="Staff: move a ticket to another status (INVALID_TRANSITION where the "
        "lifecycle does not lead there; nothing goes back to NEW, nothing leaves CLOSED)."
    )
    async def set_ticket_status(
        self, info: strawberry.Info, ticket_id: strawberry.ID, status: Status
    ) -> Ticket:
        return await support_resolvers.set_ticket_status(info, ticket_id, status)  # type: ignore[return-value]

    @strawberry.mutation(
        description="Admins: a priority's SLA targets (1 minute to a year; the first "
        "response no later than the resolution), for tickets created from now on."
    )
    async def update_sla_policy(
        self,
        info: strawberry.Info,
        priority: Priority,
        first_response_minutes: int,
        resolution_minutes: int,
    ) -> SlaPolicy:
        return await support_resolvers.update_sla_policy(  # type: ignore[return-value]
            info, priority, first_response_minutes, resolution_minutes
        )


THREAD_ACCESS = {
    "Query.slaPolicies": Access.ADMIN,
    "Mutation.addTicketMessage": Access.SIGNED_IN,
    "Mutation.addInternalNote": Access.STAFF,
    "Mutation.setTicketStatus": Access.STAFF,
    "Mutation.updateSlaPolicy": Access.ADMIN,
    "TicketMessagePayload": Access.SIGNED_IN,
    "SlaPolicy": Access.ADMIN,
}

# --- end of thread and lifecycle --------------------------------------------------------


@strawberry.type
class Query(ThreadQuery):
    ticket: Ticket = strawberry.field(
        resolver=support_resolvers.ticket,
        description="A ticket: a customer's own, or any for staff.",
    )


# --- live updates (subscriptions fed by support's events; resolvers.live has the mechanism)

_EVENT_ID = "Pass it as `after` when subscribing again, to get what came since."

TicketChange = strawberry.enum(support_resolvers.TicketChangeKind, name="TicketChange")
TicketQueueChange = strawberry.enum(
    support_resolvers.TicketQueueChangeKind, name="TicketQueueChange"
)


@strawberry.type(
    description="A ticket changed: opened, assigned, its status or priority changed, or a "
    "message added to its thread."
)
class TicketUpdatedEvent:
    event_id: strawberry.ID = strawberry.field(description=_EVENT_ID)
    occurred_at: datetime
    change: TicketChange
    ticket: Ticket = strawberry.field(
        resolver=support_resolvers.change_ticket, description="As it is now."
    )


@strawberry.type(description="A new message in a ticket's thread.")
class TicketMessageAddedEvent:
    event_id: strawberry.ID = strawberry.field(description=_EVENT_ID)
    occurred_at: datetime
    message: TicketMessage = strawberry.field(resolver=support_resolvers.change_message)
    ticket: Ticket = strawberry.field(
        resolver=support_resolvers.change_ticket, description="As it is now."
    )


@strawberry.type(description="The support queue changed for the viewer (staff).")
class TicketQueueChangedEvent:
    event_id: strawberry.ID = strawberry.field(description=_EVENT_ID)
    occurred_at: datetime
    change: TicketQueueChange = strawberry.field(
        description="A new ticket waiting for an operator, or a ticket given to the viewer."
    )
    ticket: Ticket = strawberry.field(
        resolver=support_resolvers.change_ticket, description="As it is now."
    )


@strawberry.type
class Subscription:
    ticket_updated: TicketUpdatedEvent = strawberry.subscription(
        resolver=support_resolvers.ticket_updated,
        description="The viewer's tickets as they change, or one of them (staff: one "
        "customer's, or one ticket). Internal notes reach staff only.",
    )
    ticket_message_added: TicketMessageAddedEvent = strawberry.subscription(
        resolver=support_resolvers.ticket_message_added,
        description="A ticket's new messages; internal notes reach staff only.",
    )
    ticket_queue_changed: TicketQueueChangedEvent = strawberry.subscription(
        resolver=support_resolvers.ticket_queue_changed,
        description="Staff: new tickets left unassigned, and tickets assigned to the viewer.",
    )


LIVE_ACCESS = {
    # Customers their own tickets; staff one customer's or one ticket, and the queue.
    "Subscription.ticketUpdated": Access.SIGNED_IN,
    "Subscription.ticketMessageAdded": Access.SIGNED_IN,
    "Subscription.ticketQueueChanged": Access.STAFF,
    "TicketUpdatedEvent": Access.SIGNED_IN,
    "TicketMessageAddedEvent": Access.SIGNED_IN,
    "TicketQueueChangedEvent": Access.STAFF,
}

# --- end of live updates ----------------------------------------------------------------


@strawberry.type
class Mutation(ThreadMutation):
    """The support subgraph's mutations, each part's from its block above."""


domain = Domain(
    name="support",
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    nodes=(Ticket,),
    entity_parts={"Customer": CustomerSupportFields},
    access={
        "Query.ticket": Access.SIGNED_IN,
        "Ticket": Access.SIGNED_IN,
        "TicketConnection": Access.SIGNED_IN,
        "TicketEdge": Access.SIGNED_IN,
        "TicketMessage": Access.SIGNED_IN,
        **THREAD_ACCESS,
        **LIVE_ACCESS,
    },
    rest=support_rest.ROUTES,
    error_status=support_rest.ERROR_STATUS,
    events=("ticket",),
)
