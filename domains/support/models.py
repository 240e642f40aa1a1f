"""Support tables: tickets and their messages, operators with skills and presence, every
assignment made, and the priority rules and SLA policies admins edit."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from domains.base import Base, BigId, UTCDateTime
from domains.clock import utcnow
from domains.enums import stored_enum


class TicketCategory(StrEnum):
    NO_CONNECTION = "no_connection"
    SLOW_SPEED = "slow_speed"
    BILLING = "billing"
    EQUIPMENT = "equipment"
    MOVING = "moving"
    OTHER = "other"


class TicketPriority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class TicketStatus(StrEnum):
    # Nobody from support has answered yet.
    NEW = "new"
    OPEN = "open"
    # Waiting on the customer: the SLA clock stands still.
    PENDING_CUSTOMER = "pending_customer"
    # A customer message reopens it within the reopen window.
    RESOLVED = "resolved"
    CLOSED = "closed"


# The statuses in which a ticket holds its assignee's capacity.
ACTIVE_STATUSES = frozenset({TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.PENDING_CUSTOMER})


class TicketChannel(StrEnum):
    WEB = "web"
    MOBILE = "mobile"
    # Opened by staff on the customer's behalf (a call, a visit).
    STAFF = "staff"


class AuthorKind(StrEnum):
    CUSTOMER = "customer"
    OPERATOR = "operator"
    SYSTEM = "system"


class Presence(StrEnum):
    ONLINE = "online"
    AWAY = "away"
    OFFLINE = "offline"


class AssignmentReason(StrEnum):
    AUTO = "auto"  # when the ticket was created
    QUEUE = "queue"  # taken from the queue when an operator came online or freed a slot
    MANUAL = "manual"  # staff reassigned it
    ESCALATION = "escalation"  # the SLA worker moved it off an absent assignee


class RuleCondition(StrEnum):
    CATEGORY = "category"
    SERVICE_SUSPENDED = "service_suspended"
    NO_CONNECTION = "no_connection"
    BUSINESS_SEGMENT = "business_segment"
    REPEAT_TICKET = "repeat_ticket"


class SupportOperator(Base):
    """A staff user who takes tickets; `open_tickets` counts those assigned to them in an
    active status, changed only under this row's lock, so capacity holds under concurrency."""

    __tablename__ = "support_operators"
    __table_args__ = (
        CheckConstraint("capacity BETWEEN 1 AND 1000", name="capacity_range"),
        CheckConstraint("open_tickets >= 0", name="open_tickets_non_negative"),
    )

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    presence: Mapped[Presence] = mapped_column(
        stored_enum(Presence, "operator_presence"), default=Presence.OFFLINE
    )
    capacity: Mapped[int] = mapped_column(Integer, default=5)
    open_tickets: Mapped[int] = mapped_column(Integer, default=0)
    last_assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    presence_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SupportOperatorSkill(Base):
    """A category an operator handles."""

    __tablename__ = "support_operator_skills"

    user_id: Mapped[int] = mapped_column(ForeignKey("support_operators.user_id"), primary_key=True)
    category: Mapped[TicketCategory] = mapped_column(
        stored_enum(TicketCategory, "ticket_category"), primary_key=True
    )


class TicketPriorityRule(Base):
    """One step of the priority evaluation, in `position` order: a category's base priority
    (`set_priority`), or a raise by `raise_steps` when its condition holds."""

    __tablename__ = "ticket_priority_rules"
    __table_args__ = (
        CheckConstraint("raise_steps BETWEEN 0 AND 3", name="raise_steps_range"),
        CheckConstraint("(set_priority IS NOT NULL) <> (raise_steps > 0)", name="one_action"),
        CheckConstraint("within_days IS NULL OR within_days > 0", name="within_days_positive"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    position: Mapped[int] = mapped_column(Integer, unique=True)
    description: Mapped[str] = mapped_column(String(200))
    condition: Mapped[RuleCondition] = mapped_column(stored_enum(RuleCondition, "rule_condition"))
    category: Mapped[TicketCategory | None] = mapped_column(
        stored_enum(TicketCategory, "ticket_category")
    )
    within_days: Mapped[int | None] = mapped_column(Integer)
    set_priority: Mapped[TicketPriority | None] = mapped_column(
        stored_enum(TicketPriority, "ticket_priority")
    )
    raise_steps: Mapped[int] = mapped_column(Integer, default=0)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class TicketSlaPolicy(Base):
    """Per priority: how soon support answers first, and resolves, in minutes of SLA clock."""

    __tablename__ = "ticket_sla_policies"
    __table_args__ = (
        CheckConstraint("first_response_minutes > 0", name="first_response_positive"),
        CheckConstraint("resolution_minutes > 0", name="resolution_positive"),
    )

    priority: Mapped[TicketPriority] = mapped_column(
        stored_enum(TicketPriority, "ticket_priority"), primary_key=True
    )
    first_response_minutes: Mapped[int] = mapped_column(Integer)
    resolution_minutes: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (
        Index("ix_tickets_customer_id_created_at", "customer_id", "created_at"),
        Index("ix_tickets_assignee_id_status", "assignee_id", "status"),
        # The queue: unassigned tickets still to be worked, oldest first.
        Index(
            "ix_tickets_queue",
            "created_at",
            postgresql_where=text("assignee_id IS NULL AND status IN ('new', 'open')"),
            sqlite_where=text("assignee_id IS NULL AND status IN ('new', 'open')"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    contract_id: Mapped[int | None] = mapped_column(ForeignKey("contracts.id"))
    category: Mapped[TicketCategory] = mapped_column(stored_enum(TicketCategory, "ticket_category"))
    subject: Mapped[str] = mapped_column(String(200))
    priority: Mapped[TicketPriority] = mapped_column(stored_enum(TicketPriority, "ticket_priority"))
    priority_rule_id: Mapped[int | None] = mapped_column(ForeignKey("ticket_priority_rules.id"))
    status: Mapped[TicketStatus] = mapped_column(
        stored_enum(TicketStatus, "ticket_status"), default=TicketStatus.NEW
    )
    channel: Mapped[TicketChannel] = mapped_column(stored_enum(TicketChannel, "ticket_channel"))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    first_response_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_response_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set while the ticket waits on the customer; leaving that status moves both due times
    # forward by the time it waited.
    sla_paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_response_breached_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution_breached_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TicketMessage(Base):
    __tablename__ = "ticket_messages"
    __table_args__ = (
        # Internal notes are operators': a customer never writes (or reads) one.
        CheckConstraint("NOT internal OR author_kind = 'operator'", name="internal_by_operator"),
        Index("ix_ticket_messages_ticket_id_id", "ticket_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    author_kind: Mapped[AuthorKind] = mapped_column(stored_enum(AuthorKind, "author_kind"))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(Text)
    internal: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TicketAssignment(Base):
    """Every assignment of a ticket, the system's and staff's alike."""

    __tablename__ = "ticket_assignments"
    __table_args__ = (Index("ix_ticket_assignments_ticket_id_id", "ticket_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    operator_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # None: the system assigned it.
    assigned_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[AssignmentReason] = mapped_column(
        stored_enum(AssignmentReason, "assignment_reason")
    )
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
