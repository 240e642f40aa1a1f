"""The support subgraph: customers' tickets and their threads; for staff the queue,
assignment, operators' presence and skills, and the priority rules."""

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

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


@strawberry.type
class Query:
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
class Mutation:
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


domain = Domain(
    name="support",
    query=Query,
    mutation=Mutation,
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
    },
    events=("ticket",),
    sessions_ended=(sessions_ended,),
)
