"""Support's monitoring: what the worker reports about tickets, and where each figure
comes from. The process that runs it chooses where it goes (Prometheus:
adapters/prometheus_ticket_metrics.py, wired by gateway/worker.py).

Two kinds of figure, chosen so that each stays right across a worker's restart:
- Counts of what happened (tickets created and resolved, SLA breaches, first-response
  times) come from the ticket events, through the `support_monitoring` consumer: once per
  event (its claim in `processed_events`), and told to the metrics only once the claim has
  committed (`after_commit`), so a handler tried again counts once. They are each worker
  instance's counts since it started, of the partitions it reads: a restart starts them at
  zero, which Prometheus's `rate()`/`increase()` read as a counter reset, and the
  instances' series add up (`sum`) to the whole.
- What stands now (open tickets by priority and status, the age of the oldest ticket in
  the queue) is read from the database every `BACKLOG_INTERVAL` by each worker
  (`ticket_backlog`): right from the first reading after a start whatever events came
  before, the same on every instance (dashboards and alerts take `max`). Kept from events
  instead, it would start at zero on every restart and drift with every event missed.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession

from domains.database import Database
from domains.events.cloudevent import CloudEvent
from domains.events.consumer import Handler
from domains.reads import Read, any_of
from domains.support.models import (
    ACTIVE_STATUSES,
    AuthorKind,
    TicketMessage,
    TicketPriority,
    TicketStatus,
)
from domains.support.thread import messages_by_ids
from domains.support.ticket import tickets, tickets_by_ids
from domains.writes import after_commit, writer

CONSUMER_NAME = "support_monitoring"
# How often each worker reads the open tickets and the queue from the database.
BACKLOG_INTERVAL = timedelta(seconds=30)

messages = TicketMessage.__table__


@dataclass(frozen=True, slots=True)
class TicketBacklog:
    """What stands now: open tickets per (priority, status), every active pair present (0
    when none), and when the oldest ticket in the queue came in (None: the queue is empty)."""

    open: Mapping[tuple[TicketPriority, TicketStatus], int]
    oldest_queued_at: datetime | None
    now: datetime

    @property
    def queue_age(self) -> timedelta:
        if self.oldest_queued_at is None:
            return timedelta(0)
        return max(self.now - self.oldest_queued_at, timedelta(0))


class TicketMetrics(Protocol):
    """One set per process; label values are the events' stored (lower-case) values."""

    def created(self, category: str, priority: str) -> None:
        """A ticket was opened."""

    def resolved(self, category: str, priority: str) -> None:
        """A ticket became resolved (again, after a reopen: each resolution counts)."""

    def first_response(self, priority: str, seconds: float) -> None:
        """Support's first public answer on a ticket came this long after it was opened."""

    def sla_breached(self, target: str, priority: str) -> None:
        """A ticket missed its first-response or resolution target."""

    def backlog(self, backlog: TicketBacklog) -> None:
        """The open tickets and the queue as last read from the database."""


def monitoring_handlers(metrics: TicketMetrics) -> dict[str, Handler]:
    """The `support_monitoring` consumer's handlers, reporting to `metrics` after commit."""

    async def on_created(session: AsyncSession, event: CloudEvent) -> None:
        data = event.data
        after_commit(session, lambda: metrics.created(data["category"], data["priority"]))

    async def on_status_changed(session: AsyncSession, event: CloudEvent) -> None:
        data = event.data
        if data["new_status"] == TicketStatus.RESOLVED:
            after_commit(session, lambda: metrics.resolved(data["category"], data["priority"]))

    async def on_message_added(session: AsyncSession, event: CloudEvent) -> None:
        data = event.data
        if data["author_kind"] != AuthorKind.OPERATOR or data["internal"]:
            return
        reader = writer(session)
        message = (await messages_by_ids(reader, [data["message_id"]])).get(data["message_id"])
        ticket = (await tickets_by_ids(reader, [data["ticket_id"]])).get(data["ticket_id"])
        if message is None or ticket is None or await _answered_before(session, message.id):
            return
        seconds = max((message.created_at - ticket.created_at).total_seconds(), 0.0)
        after_commit(session, lambda: metrics.first_response(ticket.priority.value, seconds))

    async def on_sla_breached(session: AsyncSession, event: CloudEvent) -> None:
        data = event.data
        after_commit(session, lambda: metrics.sla_breached(data["target"], data["priority"]))

    return {
        "ticket.created": on_created,
        "ticket.status_changed": on_status_changed,
        "ticket.message_added": on_message_added,
        "ticket.sla_breached": on_sla_breached,
    }


async def _answered_before(session: AsyncSession, message_id: int) -> bool:
    """Whether support had answered the message's ticket in public before this message."""
    this = messages.alias("this")
    earlier = (
        select(messages.c.id)
        .join(this, this.c.ticket_id == messages.c.ticket_id)
        .where(
            this.c.id == message_id,
            messages.c.id < this.c.id,
            messages.c.author_kind == AuthorKind.OPERATOR,
            messages.c.internal.is_(False),
        )
        .exists()
    )
    return bool(await session.scalar(select(earlier)))


@dataclass(frozen=True, slots=True)
class _OpenCount:
    priority: TicketPriority
    status: TicketStatus
    tickets: int


@dataclass(frozen=True, slots=True)
class _Queue:
    oldest: datetime | None


_OPEN_COUNTS = Read(
    _OpenCount,
    select(tickets.c.priority, tickets.c.status, func.count().label("tickets"))
    .where(any_of(tickets.c.status, "statuses"))
    .group_by(tickets.c.priority, tickets.c.status),
)
# The queue as assignment.py defines it; literals, so PostgreSQL's plan takes the partial
# queue index (its predicate is matched against constants only).
_OLDEST_QUEUED = Read(
    _Queue,
    select(func.min(tickets.c.created_at).label("oldest")).where(
        tickets.c.assignee_id.is_(None),
        tickets.c.status.in_(
            [literal_column(f"'{s.value}'") for s in (TicketStatus.NEW, TicketStatus.OPEN)]
        ),
    ),
)


async def ticket_backlog(db: Database, now: datetime) -> TicketBacklog:
    """Open tickets per priority and status, and the queue's oldest, as of now."""
    async with db.read() as reader:
        counts = await reader.fetch(_OPEN_COUNTS, statuses=sorted(ACTIVE_STATUSES))
        [queue] = await reader.fetch(_OLDEST_QUEUED)
    open_tickets = {
        (priority, status): 0 for priority in TicketPriority for status in ACTIVE_STATUSES
    }
    for row in counts:
        open_tickets[(row.priority, row.status)] = row.tickets
    return TicketBacklog(open_tickets, queue.oldest, now)
