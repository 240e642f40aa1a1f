"""The timeline's entries for support's events: tickets opened, their status and priority
changes, and staff reassigning them (the system's own assignments are routine, not shown)."""

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domains.crm.models import TimelineKind
from domains.crm.timeline import add_entry
from domains.events.cloudevent import CloudEvent
from domains.events.consumer import Handler
from domains.identity.models import User

users = User.__table__


async def on_ticket_created(session: AsyncSession, event: CloudEvent) -> None:
    data = event.data
    summary = (
        f"Ticket #{data['ticket_id']} opened ({data['category']}, {data['priority']},"
        f" {data['channel']}): {data['subject']}"
    )
    await _ticket_entry(session, event, TimelineKind.TICKET_CREATED, summary, data["created_by"])


async def on_ticket_status_changed(session: AsyncSession, event: CloudEvent) -> None:
    data = event.data
    summary = f"Ticket #{data['ticket_id']}: {data['old_status']} -> {data['new_status']}"
    if data["changed_by"] is None:
        summary += " (by the system)"
    await _ticket_entry(
        session, event, TimelineKind.TICKET_STATUS_CHANGED, summary, data["changed_by"]
    )


async def on_ticket_assigned(session: AsyncSession, event: CloudEvent) -> None:
    data = event.data
    if data["assigned_by"] is None:
        return
    # Staff know each other by email; the event names the operator by id.
    operator = await session.scalar(select(users.c.email).where(users.c.id == data["operator_id"]))
    summary = f"Ticket #{data['ticket_id']} assigned to {operator or data['operator_id']}"
    await _ticket_entry(session, event, TimelineKind.TICKET_ASSIGNED, summary, data["assigned_by"])


async def on_ticket_priority_changed(session: AsyncSession, event: CloudEvent) -> None:
    data = event.data
    summary = (
        f"Ticket #{data['ticket_id']} priority {data['old_priority']} -> {data['new_priority']}"
        f" ({data['reason']})"
    )
    await _ticket_entry(session, event, TimelineKind.TICKET_PRIORITY_CHANGED, summary, None)


async def _ticket_entry(
    session: AsyncSession,
    event: CloudEvent,
    kind: TimelineKind,
    summary: str,
    actor_id: int | None,
) -> None:
    await add_entry(
        session,
        event,
        kind=kind,
        summary=summary,
        reference=f"ticket:{event.data['ticket_id']}",
        actor_id=actor_id,
    )


HANDLERS: dict[str, Handler] = {
    "ticket.created": on_ticket_created,
    "ticket.status_changed": on_ticket_status_changed,
    "ticket.assigned": on_ticket_assigned,
    "ticket.priority_changed": on_ticket_priority_changed,
}
