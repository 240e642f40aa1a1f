"""A provider's delivery report (the SMS gateway's signed callback) on a sent message."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import update

from domains.database import Database
from domains.notifications.channel import DeliveryReport, DeliveryStatus
from domains.notifications.models import Notification, NotificationStatus

notifications = Notification.__table__


@dataclass(frozen=True, slots=True)
class DeliveryReports:
    """Whose reports the API takes: each provider's callback secret, and how old a
    signature's timestamp may be."""

    secrets: Mapping[str, bytes]
    tolerance: timedelta


async def record_delivery_report(db: Database, report: DeliveryReport) -> bool:
    """Marks the message the report names delivered or failed; False when no sent message
    of that provider has its id (a report for someone else's, or one already final)."""
    delivered = report.status is DeliveryStatus.DELIVERED
    values = (
        {"status": NotificationStatus.DELIVERED, "delivered_at": report.at}
        if delivered
        else {
            "status": NotificationStatus.FAILED,
            "last_error": (report.error or "undelivered")[:1000],
        }
    )
    async with db.transaction() as tx:
        changed = await tx.execute(
            update(notifications)
            .where(
                notifications.c.provider == report.provider,
                notifications.c.provider_message_id == report.provider_message_id,
                notifications.c.status == NotificationStatus.SENT,
            )
            .values(**values)
        )
    return bool(changed.rowcount)  # type: ignore[attr-defined]
