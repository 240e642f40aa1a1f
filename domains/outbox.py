"""The transactional outbox: domain events written in the same transaction as their cause.

An action that changes state and must tell the world (a password-reset email, a payment
made) calls `record_event` on its own unit of work, so the event exists exactly when the
change committed; one statement writes a unit of work's events, before its commit. The relay
(`domains/events/relay.py`) reads rows with `published_at IS NULL` in `(occurred_at, id)`
order, hands them to the bus as CloudEvents and stamps `published_at`; consumers tolerate
duplicates (at-least-once). Writing rows wakes the relay once the transaction commits (the
same statement NOTIFYs `OUTBOX_CHANNEL` on PostgreSQL; the Database's `events_committed` on
SQLite), so it need not poll. Rows are generic:

- `type`: what happened, dotted and past tense, e.g. `identity.password_reset_requested`.
- `subject`: whom it is about, `<kind>:<id>` built by `domains/events/subject.py`, e.g.
  `user:42`; the Kafka message key, so one subject's events stay in order.
- `payload`: a JSON object with an integer `version`, bumped when its shape changes, so
  consumers can read old and new events side by side.

A payload may carry a secret meant for the recipient only (a reset token, for minutes); the
relay clears such a row's payload once it is published.
"""

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Index, String, Uuid, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from domains.base import Base, UTCDateTime
from domains.clock import utcnow
from domains.ordered_uuid import ordered_uuid
from domains.writes import RowsInsert, before_commit, writer

# The channel the publishing relay LISTENs on (PostgreSQL).
OUTBOX_CHANNEL = "kabinet_outbox"
_LAST_EVENT_TIME = "kabinet.outbox.last_event_time"
_PENDING = "kabinet.outbox.pending"


class OutboxEvent(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        # Published rows by age, for the purge; an event waiting to be published is not in
        # it, so writing one (an invoice run writes one per invoice) does not touch it.
        Index(
            "ix_outbox_pending",
            "published_at",
            "occurred_at",
            postgresql_where=text("published_at IS NOT NULL"),
            sqlite_where=text("published_at IS NOT NULL"),
        ),
        # The publisher's scan: unpublished rows in its order, whatever the backlog.
        Index(
            "ix_outbox_unpublished",
            "occurred_at",
            "id",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
        # A reconnecting subscriber's catch-up: one subject's events after a point.
        Index("ix_outbox_subject_occurred", "subject", "occurred_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=ordered_uuid)
    type: Mapped[str] = mapped_column(String(100))
    subject: Mapped[str] = mapped_column(String(200))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON().with_variant(JSONB(), "postgresql"))
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# Writing rows wakes the relay when, and only if, the transaction commits: PostgreSQL
# delivers the statement's NOTIFY to its listeners at commit (one per transaction, however
# many events it holds); on SQLite the relay is in this process and the Database wakes it.
_EVENTS = RowsInsert(
    OutboxEvent.__table__,
    ("id", "type", "subject", "occurred_at", "payload"),
    notify=OUTBOX_CHANNEL,
)


async def record_event(
    session: AsyncSession, type: str, subject: str, payload: dict[str, Any]
) -> uuid.UUID:
    """Records the event in the caller's unit of work: it commits or rolls back with the
    change. The unit of work's events are written together, in the order recorded, by one
    statement just before it commits (`flush_events`)."""
    if not isinstance(payload.get("version"), int):
        raise ValueError("an outbox payload needs an integer 'version'")
    event_id = ordered_uuid()
    row = {
        "id": event_id,
        "type": type,
        "subject": subject,
        "occurred_at": _next_time(session),
        "payload": payload,
    }
    pending: list[dict[str, Any]] | None = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = []
        before_commit(session, flush_events)
    pending.append(row)
    return event_id


async def flush_events(session: AsyncSession) -> None:
    """Writes the events recorded so far in one statement (multi-row, with its NOTIFY)."""
    pending = session.info.pop(_PENDING, None)
    if pending:
        await writer(session).insert(_EVENTS, pending)


def _next_time(session: AsyncSession) -> datetime:
    """Now, but later than the unit of work's previous event: the relay and subscribers
    order by `(occurred_at, id)`, and ids are random, so one transaction's events (a
    payment, then the balance it changed) must not share a microsecond."""
    now = utcnow()
    previous: datetime | None = session.info.get(_LAST_EVENT_TIME)
    if previous is not None and now <= previous:
        now = previous + timedelta(microseconds=1)
    session.info[_LAST_EVENT_TIME] = now
    return now
