"""Support resolvers: tickets and their threads, read as the viewer may; opening and
assigning tickets, the queue, operators and their presence, the priority rules."""

from dataclasses import dataclass
from enum import StrEnum
from operator import attrgetter
from typing import Annotated, Any

import strawberry
from strawberry import Info

from dataloaders.support import (
    AssignmentsByTicketIdLoader,
    OperatorSkillsByUserIdLoader,
    PriorityRulesByIdLoader,
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
from domains.identity.user import UserRow
from domains.keyset import Page, Window
from domains.support import sla_policy, ticket_message, ticket_status
from domains.support.assignment import TicketAssignmentRow
from domains.support.models import (
    Presence,
    TicketCategory,
    TicketChannel,
    TicketPriority,
    TicketStatus,
)
from domains.support.operator import OPERATOR_ORDER, OperatorRow, operator_page
from domains.support.operator_admin import save_operator
from domains.support.presence import set_presence
from domains.support.priority import PriorityRuleRow, rules_in_order
from domains.support.priority_rule_edit import KEEP, RuleChange, update_priority_rule
from domains.support.queue import QUEUE_ORDER, QueueFilter, ticket_queue_page
from domains.support.thread import TicketMessageRow
from domains.support.ticket import TICKET_ORDER, TicketRow
from domains.support.ticket_assign import reassign_ticket
from domains.support.ticket_create import create_ticket as create_ticket_action
from resolvers.access import load_owned
from resolvers.context import Context
from resolvers.customers import contract_by_pk, customer_by_pk
from resolvers.identity import user_by_pk
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
from resolvers.relay import (
    Connection,
    connection_from_page,
    pk_of,
    to_global_id,
    window_from_arguments,
)


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


# Opening and assigning tickets; the queue, operators and priority rules (staff).


def _staff(info: Info[Context], what: str) -> None:
    if not info.context.signed_in.is_staff:
        raise Forbidden(f"only staff {what}")


async def create_ticket(
    info: Info[Context],
    category: TicketCategory,
    subject: str,
    body: str,
    contract_id: strawberry.ID | None = None,
    customer_id: strawberry.ID | None = None,
    channel: TicketChannel | None = None,
) -> TicketRow:
    """A customer's own ticket (on the web unless they say mobile), or staff's on the named
    customer's behalf (the staff channel)."""
    viewer = info.context.signed_in
    if channel is None:
        channel = TicketChannel.STAFF if viewer.is_staff else TicketChannel.WEB
    created = await create_ticket_action(
        info.context.db,
        viewer,
        category=category,
        subject=subject,
        body=body,
        contract_id=None if contract_id is None else pk_of(contract_id, "Contract"),
        customer_id=None if customer_id is None else pk_of(customer_id, "Customer"),
        channel=channel,
        clock=info.context.clock,
    )
    info.context.loaders.of(TicketsByIdLoader).prime(created.ticket.id, created.ticket)
    return created.ticket


async def assign_ticket(
    info: Info[Context], ticket_id: strawberry.ID, operator_id: strawberry.ID
) -> TicketRow:
    assignment = await reassign_ticket(
        info.context.db,
        info.context.signed_in,
        ticket_id=pk_of(ticket_id, "Ticket"),
        operator_id=pk_of(operator_id, "User"),
        clock=info.context.clock,
    )
    info.context.loaders.of(TicketsByIdLoader).prime(assignment.ticket.id, assignment.ticket)
    return assignment.ticket


async def set_my_presence(info: Info[Context], presence: Presence) -> OperatorRow:
    result = await set_presence(
        info.context.db, info.context.signed_in, presence, clock=info.context.clock
    )
    return result.operator


async def ticket_queue(
    info: Info[Context],
    status: list[TicketStatus] | None = None,
    priority: list[TicketPriority] | None = None,
    category: list[TicketCategory] | None = None,
    assignee_id: strawberry.ID | None = None,
    unassigned: bool = False,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
) -> Connection[TicketRow]:
    """Staff: every customer's tickets, oldest first, filtered."""
    _staff(info, "read the ticket queue")
    where = QueueFilter(
        frozenset(status or ()),
        frozenset(priority or ()),
        frozenset(category or ()),
        None if assignee_id is None else pk_of(assignee_id, "User"),
        unassigned,
    )
    window = window_from_arguments(QUEUE_ORDER, first, after, last, before)
    async with info.context.db.read() as reader:
        page = await ticket_queue_page(reader, where, window)
    return connection_from_page(page, QUEUE_ORDER)


async def ticket_priority_rules(info: Info[Context]) -> list[PriorityRuleRow]:
    """Staff: every rule in evaluation order, enabled or not."""
    _staff(info, "read the priority rules")
    async with info.context.db.read() as reader:
        return await rules_in_order(reader)


async def edit_ticket_priority_rule(
    info: Info[Context],
    id: strawberry.ID,
    description: str | None = None,
    enabled: bool | None = None,
    set_priority: TicketPriority | None = None,
    raise_steps: int | None = None,
    within_days: int | None = None,
    category: Any = KEEP,
) -> PriorityRuleRow:
    """`category` left out keeps the rule's; given as null, the rule applies to all."""
    change = RuleChange(description, enabled, set_priority, raise_steps, within_days, category)
    return await update_priority_rule(
        info.context.db,
        info.context.signed_in,
        pk_of(id, "TicketPriorityRule"),
        change,
        clock=info.context.clock,
    )


async def support_operators(
    info: Info[Context],
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
) -> Connection[OperatorRow]:
    """Staff: every support operator, by user id."""
    _staff(info, "list support operators")
    window = window_from_arguments(OPERATOR_ORDER, first, after, last, before)
    async with info.context.db.read() as reader:
        page = await operator_page(reader, window)
    return connection_from_page(page, OPERATOR_ORDER)


async def save_support_operator(
    info: Info[Context],
    user_id: strawberry.ID,
    skills: list[TicketCategory] | None = None,
    capacity: int | None = None,
) -> OperatorRow:
    saved = await save_operator(
        info.context.db,
        info.context.signed_in,
        pk_of(user_id, "User"),
        skills=skills,
        capacity=capacity,
        clock=info.context.clock,
    )
    info.context.loaders.of(OperatorSkillsByUserIdLoader).prime(
        saved.operator.user_id, saved.skills
    )
    return saved.operator


async def operator_user(root: OperatorRow, info: Info[Context]) -> UserRow:
    return await user_by_pk(info, root.user_id)


@lookup(OperatorSkillsByUserIdLoader, attrgetter("user_id"))
async def operator_skills(root: OperatorRow, info: Info[Context]) -> list[TicketCategory]:
    """In name order."""


async def ticket_assignee(root: TicketRow, info: Info[Context]) -> UserRow | None:
    if root.assignee_id is None:
        return None
    return await user_by_pk(info, root.assignee_id)


@lookup(AssignmentsByTicketIdLoader, attrgetter("id"))
async def ticket_assignments(root: TicketRow, info: Info[Context]) -> list[TicketAssignmentRow]:
    """Oldest first."""


async def ticket_priority_rule(root: TicketRow, info: Info[Context]) -> PriorityRuleRow | None:
    if root.priority_rule_id is None:
        return None
    return await info.context.loaders.of(PriorityRulesByIdLoader).load(root.priority_rule_id)


async def assignment_operator(root: TicketAssignmentRow, info: Info[Context]) -> UserRow:
    return await user_by_pk(info, root.operator_id)


async def assignment_assigned_by(root: TicketAssignmentRow, info: Info[Context]) -> UserRow | None:
    if root.assigned_by is None:
        return None
    return await user_by_pk(info, root.assigned_by)


def rule_id(root: PriorityRuleRow) -> strawberry.ID:
    return strawberry.ID(to_global_id("TicketPriorityRule", root.id))


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
