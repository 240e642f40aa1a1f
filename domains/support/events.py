"""Support's domain events, written to the outbox in the transaction of their cause.

Subject `customer:<id>`, as billing's: one customer's events stay in order, a customer's
stream of their tickets is their subject's stream, and a one-ticket stream filters by
`ticket_id`. Payload version 1 of each type (ids integers, times ISO 8601 UTC, enums their
stored lower-case values); no message body travels on the bus, only its id:

- `ticket.created`: `{version, ticket_id, customer_id, contract_id, category, priority,
  priority_rule_id, status, channel, subject, created_by}`.
- `ticket.assigned`: `{version, ticket_id, customer_id, operator_id, previous_operator_id,
  reason, assigned_by, priority, category}`; `assigned_by` null when the system assigned.
- `ticket.message_added`: `{version, ticket_id, customer_id, message_id, author_kind,
  author_id, internal}`; consumers that show messages to customers skip `internal` ones.
- `ticket.status_changed`: `{version, ticket_id, customer_id, old_status, new_status,
  changed_by, priority, category}`; `changed_by` null when the system changed it.
- `ticket.priority_changed`: `{version, ticket_id, customer_id, old_priority,
  new_priority, reason}`, reason one of `escalation`, `payment`, `staff`.
- `ticket.sla_breached`: `{version, ticket_id, customer_id, target, due_at, priority,
  assignee_id}`, target `first_response` or `resolution`; once per target and ticket.
"""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from domains.events.subject import CUSTOMER
from domains.outbox import record_event

VERSION = 1


async def _record(
    session: AsyncSession, type: str, *, ticket_id: int, customer_id: int, **data: Any
) -> None:
    payload: dict[str, Any] = {
        "version": VERSION,
        "ticket_id": ticket_id,
        "customer_id": customer_id,
    }
    for name, value in data.items():
        if isinstance(value, StrEnum):
            value = value.value
        elif isinstance(value, datetime):
            value = value.isoformat()
        payload[name] = value
    await record_event(session, type, CUSTOMER.of(customer_id), payload)


async def ticket_created(
    session: AsyncSession,
    *,
    ticket_id: int,
    customer_id: int,
    contract_id: int | None,
    category: StrEnum,
    priority: StrEnum,
    priority_rule_id: int | None,
    status: StrEnum,
    channel: StrEnum,
    subject: str,
    created_by: int,
) -> None:
    await _record(
        session,
        "ticket.created",
        ticket_id=ticket_id,
        customer_id=customer_id,
        contract_id=contract_id,
        category=category,
        priority=priority,
        priority_rule_id=priority_rule_id,
        status=status,
        channel=channel,
        subject=subject,
        created_by=created_by,
    )


async def ticket_assigned(
    session: AsyncSession,
    *,
    ticket_id: int,
    customer_id: int,
    operator_id: int,
    previous_operator_id: int | None,
    reason: StrEnum,
    assigned_by: int | None,
    priority: StrEnum,
    category: StrEnum,
) -> None:
    await _record(
        session,
        "ticket.assigned",
        ticket_id=ticket_id,
        customer_id=customer_id,
        operator_id=operator_id,
        previous_operator_id=previous_operator_id,
        reason=reason,
        assigned_by=assigned_by,
        priority=priority,
        category=category,
    )


async def message_added(
    session: AsyncSession,
    *,
    ticket_id: int,
    customer_id: int,
    message_id: int,
    author_kind: StrEnum,
    author_id: int | None,
    internal: bool,
) -> None:
    await _record(
        session,
        "ticket.message_added",
        ticket_id=ticket_id,
        customer_id=customer_id,
        message_id=message_id,
        author_kind=author_kind,
        author_id=author_id,
        internal=internal,
    )


async def status_changed(
    session: AsyncSession,
    *,
    ticket_id: int,
    customer_id: int,
    old_status: StrEnum,
    new_status: StrEnum,
    changed_by: int | None,
    priority: StrEnum,
    category: StrEnum,
) -> None:
    await _record(
        session,
        "ticket.status_changed",
        ticket_id=ticket_id,
        customer_id=customer_id,
        old_status=old_status,
        new_status=new_status,
        changed_by=changed_by,
        priority=priority,
        category=category,
    )


async def priority_changed(
    session: AsyncSession,
    *,
    ticket_id: int,
    customer_id: int,
    old_priority: StrEnum,
    new_priority: StrEnum,
    reason: str,
) -> None:
    await _record(
        session,
        "ticket.priority_changed",
        ticket_id=ticket_id,
        customer_id=customer_id,
        old_priority=old_priority,
        new_priority=new_priority,
        reason=reason,
    )


async def sla_breached(
    session: AsyncSession,
    *,
    ticket_id: int,
    customer_id: int,
    target: str,
    due_at: datetime,
    priority: StrEnum,
    assignee_id: int | None,
) -> None:
    await _record(
        session,
        "ticket.sla_breached",
        ticket_id=ticket_id,
        customer_id=customer_id,
        target=target,
        due_at=due_at,
        priority=priority,
        assignee_id=assignee_id,
    )
