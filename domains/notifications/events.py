"""The notification service's own event: `notification.received`, `{version,
notification_id, user_id}` about `user:<id>`, when a message lands in a user's inbox; the
live `notificationReceived` stream follows it."""

from sqlalchemy.ext.asyncio import AsyncSession

from domains.events.subject import USER
from domains.outbox import record_event

RECEIVED = "notification.received"


async def notification_received(
    session: AsyncSession, *, notification_id: int, user_id: int
) -> None:
    await record_event(
        session,
        RECEIVED,
        USER.of(user_id),
        {"version": 1, "notification_id": notification_id, "user_id": user_id},
    )
