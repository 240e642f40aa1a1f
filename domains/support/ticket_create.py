"""Opening a ticket: by a customer for themselves (web, mobile), or by staff on a customer's
behalf (staff channel).

One transaction: the checks, the priority from the rules (domains/support/priority.py),
the SLA due times from the priority's policy, the ticket and its first message, then its
assignment to the least-loaded operator with the skill, or the queue
(domains/support/assignment.py). `ticket.created` then `ticket.assigned` go to the outbox
with it; a refused request writes nothing.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import BigInteger, bindparam, exists, func, insert, or_, select

from domains.clock import SYSTEM_CLOCK, Clock
from domains.customers.contract import contracts_by_ids
from domains.customers.customer import customers_by_ids
from domains.customers.models import (
    Contract,
    ContractStatus,
    Segment,
    Subscription,
    SubscriptionStatus,
    Tariff,
)
from domains.database import Database
from domains.errors import Forbidden, InvalidInput, NotFound
from domains.identity.viewer import Viewer
from domains.reads import Read, row_columns
from domains.support import events
from domains.support.assignment import Assignment, assign_ticket
from domains.support.models import (
    AssignmentReason,
    AuthorKind,
    Ticket,
    TicketCategory,
    TicketChannel,
    TicketSlaPolicy,
    TicketStatus,
)
from domains.support.priority import CustomerFacts, evaluate, rules_in_order
from domains.support.sla import due_times
from domains.support.thread import MAX_BODY, TicketMessageRow, write_message
from domains.support.ticket import TicketRow
from domains.writes import Write, writer

tickets = Ticket.__table__
contracts = Contract.__table__
subscriptions = Subscription.__table__
tariffs = Tariff.__table__
policies = TicketSlaPolicy.__table__

MAX_SUBJECT = 200
CUSTOMER_CHANNELS = (TicketChannel.WEB, TicketChannel.MOBILE)

E = TypeVar("E", TicketCategory, TicketChannel)


@dataclass(frozen=True, slots=True)
class TicketCreated:
    # As committed: assigned (`assignee_id`) unless it waits in the queue.
    ticket: TicketRow
    message: TicketMessageRow
    assignment: Assignment | None


@dataclass(frozen=True, slots=True)
class _Standing:
    suspended: bool
    business: bool


@dataclass(frozen=True, slots=True)
class _LastTicket:
    category: TicketCategory
    at: datetime


@dataclass(frozen=True, slots=True)
class _Targets:
    first_response_minutes: int
    resolution_minutes: int


def _standing() -> Read[_Standing]:
    customer = bindparam("customer_id", type_=BigInteger)
    suspended = exists().where(
        contracts.c.customer_id == customer, contracts.c.status == ContractStatus.SUSPENDED
    )
    active_tariffs = or_(
        tariffs.c.id.in_(
            select(contracts.c.tariff_id).where(
                contracts.c.customer_id == customer, contracts.c.status == ContractStatus.ACTIVE
            )
        ),
        tariffs.c.id.in_(
            select(subscriptions.c.tariff_id).where(
                subscriptions.c.customer_id == customer,
                subscriptions.c.status == SubscriptionStatus.ACTIVE,
            )
        ),
    )
    business = exists().where(tariffs.c.segment == Segment.BUSINESS, active_tariffs)
    return Read(_Standing, select(suspended.label("suspended"), business.label("business")))


_STANDING = _standing()
_LAST_TICKETS = Read(
    _LastTicket,
    select(tickets.c.category, func.max(tickets.c.created_at).label("at"))
    .where(tickets.c.customer_id == bindparam("customer_id"))
    .group_by(tickets.c.category),
)
_TARGETS = Read(
    _Targets,
    select(policies.c.first_response_minutes, policies.c.resolution_minutes).where(
        policies.c.priority == bindparam("priority")
    ),
)
_COLUMNS = (
    "customer_id",
    "contract_id",
    "category",
    "subject",
    "priority",
    "priority_rule_id",
    "status",
    "channel",
    "created_by",
    "created_at",
    "updated_at",
    "first_response_due_at",
    "resolution_due_at",
)
_INSERT = Write(
    insert(tickets)
    .values({name: bindparam(name) for name in _COLUMNS})
    .returning(*row_columns(TicketRow, tickets)),
    TicketRow,
)


async def create_ticket(
    db: Database,
    viewer: Viewer,
    *,
    category: TicketCategory | str,
    subject: str,
    body: str,
    contract_id: int | None = None,
    customer_id: int | None = None,
    channel: TicketChannel | str,
    clock: Clock = SYSTEM_CLOCK,
) -> TicketCreated:
    """A customer's ticket about their account (and one of their contracts, if named);
    staff name the customer. `body` is the thread's first message."""
    category = _member(TicketCategory, category, "category")
    channel = _member(TicketChannel, channel, "channel")
    owner = _owner(viewer, customer_id, channel)
    # One line: runs of spaces, tabs and line breaks become one space.
    subject = " ".join(subject.split())
    if not subject:
        raise InvalidInput("the subject is empty")
    if len(subject) > MAX_SUBJECT:
        raise InvalidInput(f"the subject is longer than {MAX_SUBJECT} characters")
    if not body.strip():
        raise InvalidInput("the message is empty")
    if len(body) > MAX_BODY:
        raise InvalidInput(f"the message is longer than {MAX_BODY} characters")
    now = clock.now()
    async with db.transaction() as session:
        tx = writer(session)
        if viewer.customer_id is None and owner not in await customers_by_ids(tx, [owner]):
            raise NotFound("customer")
        if contract_id is not None:
            contract = (await contracts_by_ids(tx, [contract_id])).get(contract_id)
            if contract is None or contract.customer_id != owner:
                raise NotFound("contract")
        [standing] = await tx.fetch(_STANDING, customer_id=owner)
        last = await tx.fetch(_LAST_TICKETS, customer_id=owner)
        facts = CustomerFacts(
            suspended=standing.suspended,
            business=standing.business,
            last_ticket_at={row.category: row.at for row in last},
        )
        evaluation = evaluate(await rules_in_order(tx), category=category, facts=facts, now=now)
        targets = await tx.fetch(_TARGETS, priority=evaluation.priority)
        first_due, resolution_due = due_times(targets[0], now) if targets else (None, None)
        [ticket] = await tx.fetch(
            _INSERT,
            customer_id=owner,
            contract_id=contract_id,
            category=category,
            subject=subject,
            priority=evaluation.priority,
            priority_rule_id=evaluation.rule_id,
            status=TicketStatus.NEW,
            channel=channel,
            created_by=viewer.user_id,
            created_at=now,
            updated_at=now,
            first_response_due_at=first_due,
            resolution_due_at=resolution_due,
        )
        await events.ticket_created(
            session,
            ticket_id=ticket.id,
            customer_id=owner,
            contract_id=contract_id,
            category=category,
            priority=ticket.priority,
            priority_rule_id=ticket.priority_rule_id,
            status=ticket.status,
            channel=channel,
            subject=subject,
            created_by=viewer.user_id,
        )
        message = await write_message(
            session,
            ticket=ticket,
            # Staff write down what the customer told them, as support.
            author_kind=AuthorKind.CUSTOMER if viewer.customer_id else AuthorKind.OPERATOR,
            author_id=viewer.user_id,
            body=body,
            internal=False,
            now=now,
        )
        assignment = await assign_ticket(session, ticket, now, reason=AssignmentReason.AUTO)
    if assignment is not None:
        ticket = assignment.ticket
    return TicketCreated(ticket, message, assignment)


def _owner(viewer: Viewer, customer_id: int | None, channel: TicketChannel) -> int:
    """Whose ticket it is: the customer's own, or the one staff name."""
    if viewer.customer_id is not None:
        if customer_id is not None and customer_id != viewer.customer_id:
            raise NotFound("customer")
        if channel not in CUSTOMER_CHANNELS:
            raise InvalidInput("a customer opens a ticket on the web or mobile channel")
        return viewer.customer_id
    if not viewer.is_staff:
        raise Forbidden("only customers and staff open tickets")
    if customer_id is None:
        raise InvalidInput("staff name the customer the ticket is for")
    if channel is not TicketChannel.STAFF:
        raise InvalidInput("staff open a ticket on the staff channel")
    return customer_id


def _member(enum: type[E], value: E | str, name: str) -> E:
    try:
        return enum(value)
    except ValueError:
        raise InvalidInput(f"unknown {name}: {str(value)[:40]!r}") from None
