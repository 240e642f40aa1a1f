"""The audit log: one row per staff mutation, appended and never changed (0020's trigger
refuses UPDATE and DELETE on PostgreSQL; no code path writes anything but INSERT)."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from domains.base import Base, BigId, UTCDateTime


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (
        # The admins' page, newest first, and its filters by actor and customer.
        Index("ix_audit_log_recorded", "recorded_at", "id"),
        Index("ix_audit_log_actor", "actor_id", "recorded_at", "id"),
        Index("ix_audit_log_customer", "customer_id", "recorded_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    actor_role: Mapped[str] = mapped_column(String(16))
    session_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    client_address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(256))
    # "Mutation.refundPayment", or a REST route "POST /billing/pay".
    operation: Mapped[str] = mapped_column(String(128))
    # Its arguments, secrets replaced by "[redacted]".
    arguments: Mapped[dict[str, Any]] = mapped_column(JSON)
    # OK, or REFUSED with the error code the caller was answered.
    outcome: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(64))
    # The customer the change was about, when one is found among the changed rows.
    customer_id: Mapped[int | None] = mapped_column(BigId)
    # Each changed row: {"table", "op", "before", "after"}.
    changes: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
