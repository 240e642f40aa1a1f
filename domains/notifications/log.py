"""The delivery log staff read: every message a user was sent, newest first, how it ended."""

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam

from domains.keyset import Ordering, Page, PageRead, Window
from domains.notifications.models import Category, Medium, Notification, NotificationStatus
from domains.reads import Reader, select_rows

notifications = Notification.__table__


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    id: int
    user_id: int
    event_id: uuid.UUID
    event_type: str
    category: Category
    medium: Medium
    address: str | None
    status: NotificationStatus
    attempts: int
    provider: str | None
    provider_message_id: str | None
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None


LOG_ORDER = Ordering((notifications.c.id,), descending=True)
LOG_PAGES = PageRead(
    DeliveryRow,
    select_rows(DeliveryRow, notifications).where(notifications.c.user_id == bindparam("user_id")),
    LOG_ORDER,
)


async def delivery_log(reader: Reader, user_id: int, window: Window) -> Page[DeliveryRow]:
    return await LOG_PAGES.page(reader, window, user_id=user_id)
