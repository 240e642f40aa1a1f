"""The CRM timeline: one row per domain event about a customer that staff want to see."""

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from domains.base import Base, BigId, UTCDateTime
from domains.enums import stored_enum


class TimelineKind(StrEnum):
    PAYMENT = "payment"
    REFUND = "refund"
    INVOICE_ISSUED = "invoice_issued"
    INVOICE_PAID = "invoice_paid"
    INVOICE_OVERDUE = "invoice_overdue"
    TICKET_CREATED = "ticket_created"
    TICKET_STATUS_CHANGED = "ticket_status_changed"
    TICKET_ASSIGNED = "ticket_assigned"
    TICKET_PRIORITY_CHANGED = "ticket_priority_changed"
    STAFF_ACTION = "staff_action"


class TimelineEntry(Base):
    __tablename__ = "crm_timeline"
    __table_args__ = (
        # A customer's timeline, newest first: the staff's page reads this index backwards.
        Index("ix_crm_timeline_customer_occurred", "customer_id", "occurred_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    # When it happened: the event's time (its commit), not when the consumer read it.
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[TimelineKind] = mapped_column(stored_enum(TimelineKind, "timeline_kind"))
    summary: Mapped[str] = mapped_column(Text)
    # What it is about, `<kind>:<id>` ("payment:12", "ticket:3").
    reference: Mapped[str] = mapped_column(String(64))
    # The event it came from: a redelivered event finds its row and adds none.
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    # The user who acted, when the event names one: staff (a refund, a reassignment, a
    # status set by hand, a ticket opened for the customer) or the customer on their own
    # ticket; null for the system's doings and for payments.
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
