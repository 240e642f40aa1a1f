"""The support subgraph: customers' tickets and their threads; for staff the queue,
assignment, operators' presence and skills, and the priority rules."""

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from domains.support import consumer as support_consumer
from domains.support.models import (
    AssignmentReason,
    AuthorKind,
    Presence,
    RuleCondition,
    TicketCategory,
    TicketChannel,
    TicketPriority,
    TicketStatus,
)
from domains.support.presence import sessions_ended
from domains.support.priority_rule_edit import KEEP
from domains.support.ticket import TicketRow
from resolvers import support as support_resolvers
from resolvers.relay import pk_of
from resolvers.rest import support as support_rest
from schema.access import Access
from schema.plugin import Domain
from schema.shared import Connection, Node, is_row, node_id

if TYPE_CHECKING:
    from schema.customers import Contract
    from schema.entities import Customer, User

CustomerRef = Annotated["Customer", strawberry.lazy("schema.entities")]
UserRef = Annotated["User", strawberry.lazy("schema.entities")]
ContractRef = Annotated["Contract", strawberry.lazy("schema.customers")]

Category = strawberry.enum(TicketCategory, name="TicketCategory")
Priority = strawberry.enum(TicketPriority, name="TicketPriority")
Status = strawberry.enum(TicketStatus, name="TicketStatus")
Channel = strawberry.enum(TicketChannel, name="TicketChannel")
Author = strawberry.enum(AuthorKind, name="TicketAuthorKind")
OperatorPresence = strawberry.enum(Presence, name="OperatorPresence")
Reason = strawberry.enum(AssignmentReason, name="TicketAssignmentReason")
Condition = strawberry.enum(RuleCondition, name="TicketPriorityCondition")


@strawberry.type(
    description="A priority rule: rules run in position order when a ticket is created, "
    "each that matches setting the priority or raising it (at most to URGENT)."
)
class TicketPriorityRule:
    id: strawberry.ID = strawberry.field(resolver=support_resolvers.rule_id)
    position: int = strawberry.field(description="Where it runs: lowest first.")
    description: str
    condition: Condition
    category: Category | None = strawberry.field(
        description="The category a CATEGORY rule sets; for other rules, the only category "
        "they apply to (none: all)."
    )
    within_days: int | None = strawberry.field(description="REPEAT_TICKET: how recent.")
    set_priority: Priority | None = strawberry.field(description="The priority it sets.")
    raise_steps: int = strawberry.field(description="Or how many steps it raises it.")
    enabled: bool
    updated_at: datetime


@strawberry.type(description="One assignment of a ticket to an operator.")
class TicketAssignment:
    operator: UserRef = strawberry.field(resolver=support_resolvers.assignment_operator)
    assigned_by: UserRef | None = strawberry.field(
        resolver=support_resolvers.assignment_assigned_by,
        description="Staff who assigned it; none when the system did.",
    )
    reason: Reason
    assigned_at: datetime


@strawberry.type(description="A staff user who takes tickets of the categories they handle.")
class SupportOperator:
    user: UserRef = strawberry.field(resolver=support_resolvers.operator_user)
    presence: OperatorPresence
    capacity: int = strawberry.field(description="Open tickets they take at most at once.")
    open_tickets: int = strawberry.field(
        description="Tickets assigned to them that are new, open or pending the customer."
    )
    last_assigned_at: datetime | None
    presence_changed_at: datetime
    skills: list[Category] = strawberry.field(
        resolver=support_resolvers.operator_skills, description="The categories they handle."
    )


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
    assignee: UserRef | None = strawberry.field(
        resolver=support_resolvers.ticket_assignee,
        description="Staff: the operator working it; none while it waits in the queue.",
    )
    assignments: list[TicketAssignment] = strawberry.field(
        resolver=support_resolvers.ticket_assignments,
        description="Staff: every assignment of it, oldest first.",
    )
    priority_rule: TicketPriorityRule | None = strawberry.field(
        resolver=support_resolvers.ticket_priority_rule,
        description="Staff: the rule that set its priority when it was created.",
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
    ticket_queue: Connection[Ticket] = strawberry.field(
        resolver=support_resolvers.ticket_queue,
        description="Staff: tickets oldest first, by status, priority, category, assignee "
        "(or `unassigned: true`, the queue).",
    )
    ticket_priority_rules: list[TicketPriorityRule] = strawberry.field(
        resolver=support_resolvers.ticket_priority_rules,
        description="Staff: the priority rules in the order they run.",
    )
    support_operators: Connection[SupportOperator] = strawberry.field(
        resolver=support_resolvers.support_operators,
        description="Staff: the support operators, their presence, load and skills.",
    )


@strawberry.input(description="A new ticket; `body` is the first message of its thread.")
class CreateTicketInput:
    category: Category
    subject: str = strawberry.field(description="1 to 200 characters.")
    body: str = strawberry.field(description="Up to 10,000 characters.")
    contract_id: strawberry.ID | None = strawberry.field(
        default=None, description="The customer's contract it is about, if one."
    )
    customer_id: strawberry.ID | None = strawberry.field(
        default=None, description="Staff: the customer it is for."
    )
    channel: Channel | None = strawberry.field(
        default=None,
        description="Customers: WEB (the default) or MOBILE; staff: STAFF (the default).",
    )


@strawberry.input(description="What to change in a priority rule; what is left out stays.")
class TicketPriorityRuleInput:
    description: str | None = None
    enabled: bool | None = None
    set_priority: Priority | None = strawberry.field(
        default=None, description="Makes it set this priority (and raise none)."
    )
    raise_steps: int | None = strawberry.field(
        default=None, description="1 to 3: makes it raise the priority (and set none)."
    )
    within_days: int | None = strawberry.field(default=None, description="REPEAT_TICKET only.")
    category: Category | None = strawberry.field(
        default=strawberry.UNSET, description="null: the rule applies to every category."
    )


@strawberry.type
class Mutation(ThreadMutation):
    @strawberry.mutation(
        description="Open a ticket: a customer's own, or staff's on a customer's behalf. Its "
        "priority comes from the rules, and it goes to the least-loaded online operator with "
        "the skill, or waits in the queue."
    )
    async def create_ticket(self, info: strawberry.Info, input: CreateTicketInput) -> Ticket:
        return await support_resolvers.create_ticket(  # type: ignore[return-value]
            info,
            input.category,
            input.subject,
            input.body,
            input.contract_id,
            input.customer_id,
            input.channel,
        )

    @strawberry.mutation(
        description="Staff: give a ticket to an operator (by their user id), who must have "
        "room; the previous assignee's slot goes to the queue."
    )
    async def assign_ticket(
        self, info: strawberry.Info, ticket_id: strawberry.ID, operator_id: strawberry.ID
    ) -> Ticket:
        return await support_resolvers.assign_ticket(  # type: ignore[return-value]
            info, ticket_id, operator_id
        )

    @strawberry.mutation(
        description="Operators: online takes tickets (the queue's first ones at once), away "
        "and offline take none. Signing out of the last session sets offline."
    )
    async def set_my_presence(
        self, info: strawberry.Info, presence: OperatorPresence
    ) -> SupportOperator:
        return await support_resolvers.set_my_presence(info, presence)  # type: ignore[return-value]

    @strawberry.mutation(description="Admins: change a priority rule; the next tickets use it.")
    async def update_ticket_priority_rule(
        self, info: strawberry.Info, id: strawberry.ID, input: TicketPriorityRuleInput
    ) -> TicketPriorityRule:
        category = KEEP if input.category is strawberry.UNSET else input.category
        return await support_resolvers.edit_ticket_priority_rule(  # type: ignore[return-value]
            info,
            id,
            input.description,
            input.enabled,
            input.set_priority,
            input.raise_steps,
            input.within_days,
            category,
        )

    @strawberry.mutation(
        description="Admins: make a staff user a support operator, or change one: `skills` "
        "replaces their categories, `capacity` (1 to 1000, default 5) their room."
    )
    async def save_support_operator(
        self,
        info: strawberry.Info,
        user_id: strawberry.ID,
        skills: list[Category] | None = None,
        capacity: int | None = None,
    ) -> SupportOperator:
        return await support_resolvers.save_support_operator(  # type: ignore[return-value]
            info, user_id, skills, capacity
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


domain = Domain(
    name="support",
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    nodes=(Ticket,),
    entity_parts={"Customer": CustomerSupportFields},
    access={
        "Query.ticket": Access.SIGNED_IN,
        "Query.ticketQueue": Access.STAFF,
        "Query.ticketPriorityRules": Access.STAFF,
        "Query.supportOperators": Access.STAFF,
        "Mutation.createTicket": Access.SIGNED_IN,
        "Mutation.assignTicket": Access.STAFF,
        "Mutation.setMyPresence": Access.STAFF,
        "Mutation.updateTicketPriorityRule": Access.ADMIN,
        "Mutation.saveSupportOperator": Access.ADMIN,
        "Ticket.assignee": Access.STAFF,
        "Ticket.assignments": Access.STAFF,
        "Ticket.priorityRule": Access.STAFF,
        "TicketAssignment": Access.STAFF,
        "TicketPriorityRule": Access.STAFF,
        "SupportOperator": Access.STAFF,
        "SupportOperatorConnection": Access.STAFF,
        "SupportOperatorEdge": Access.STAFF,
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
    consumers={support_consumer.CONSUMER_NAME: support_consumer.HANDLERS},
    sessions_ended=(sessions_ended,),
)
