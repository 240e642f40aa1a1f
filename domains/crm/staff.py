"""The timeline's entries for staff actions: each audited staff mutation that changed a
customer's objects (`audit.recorded`, domains/audit/log.py), whatever the mutation was."""

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domains.crm.models import TimelineKind
from domains.crm.timeline import add_entry
from domains.events.cloudevent import CloudEvent
from domains.events.consumer import Handler
from domains.identity.models import User

users = User.__table__


async def on_audit_recorded(session: AsyncSession, event: CloudEvent) -> None:
    data = event.data
    if data.get("customer_id") is None:
        return
    # Staff know each other by email; the event names the actor by id.
    actor = await session.scalar(select(users.c.email).where(users.c.id == data["actor_id"]))
    summary = f"{data['operation']} by {actor or data['actor_id']}"
    await add_entry(
        session,
        event,
        kind=TimelineKind.STAFF_ACTION,
        summary=summary,
        reference=f"audit:{data['audit_id']}",
        actor_id=data["actor_id"],
    )


HANDLERS: dict[str, Handler] = {"audit.recorded": on_audit_recorded}
