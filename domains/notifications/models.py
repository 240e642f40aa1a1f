"""Notification tables: push devices, each user's preferences, and the delivery records
(one per event, recipient and channel; in-app ones are the user's inbox)."""

import uuid
from datetime import datetime, time
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Time,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from domains.base import Base, BigId, UTCDateTime
from domains.clock import utcnow
from domains.enums import stored_enum
from domains.notifications.channel import PushPlatform


class Category(StrEnum):
    """What a message is about; a customer turns categories off per channel, except
    security, which always goes out."""

    BILLING = "billing"
    SUPPORT = "support"
    SECURITY = "security"
    SERVICE = "service"


class Medium(StrEnum):
    """Where a notification goes: the outside channels (channel.ChannelKind's values) and
    the user's in-app inbox."""

    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"
    IN_APP = "in_app"


class NotificationStatus(StrEnum):
    QUEUED = "queued"  # waiting for its next attempt (or the end of quiet hours)
    SENT = "sent"  # the provider took it (in-app: in the inbox)
    DELIVERED = "delivered"  # the provider's delivery report said so
    FAILED = "failed"  # refused for good, or out of attempts (dead letter)


class PushDevice(Base):
    """A device's push token; a token belongs to one user at a time (re-registering moves
    it)."""

    __tablename__ = "push_devices"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    platform: Mapped[PushPlatform] = mapped_column(stored_enum(PushPlatform, "push_platform"))
    token: Mapped[str] = mapped_column(String(512), unique=True)
    app_id: Mapped[str] = mapped_column(String(255))
    locale: Mapped[str] = mapped_column(String(8))
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class NotificationSettings(Base):
    """A user's locale, time zone and quiet hours; no row: the defaults."""

    __tablename__ = "notification_settings"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    locale: Mapped[str] = mapped_column(String(8))
    time_zone: Mapped[str] = mapped_column(String(64))
    # Both or neither: no quiet hours without them.
    quiet_start: Mapped[time | None] = mapped_column(Time)
    quiet_end: Mapped[time | None] = mapped_column(Time)


class NotificationPreference(Base):
    """A category turned on or off on one medium; no row: on."""

    __tablename__ = "notification_preferences"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    category: Mapped[Category] = mapped_column(
        stored_enum(Category, "notification_category"), primary_key=True
    )
    medium: Mapped[Medium] = mapped_column(
        stored_enum(Medium, "notification_medium"), primary_key=True
    )
    enabled: Mapped[bool] = mapped_column(Boolean)


class Notification(Base):
    """One message to one user on one medium for one event: its delivery record, and for
    in-app ones the inbox entry. `target` tells a user's push devices apart (the device id;
    '' otherwise), so an event redelivered inserts nothing new and sends nothing twice."""

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("event_id", "user_id", "medium", "target", name="uq_notifications_event"),
        # The dispatcher's scan: what is due, in order; sent and failed rows are not in it.
        Index(
            "ix_notifications_due",
            "next_attempt_at",
            "id",
            postgresql_where=text("status = 'queued'"),
            sqlite_where=text("status = 'queued'"),
        ),
        # A user's inbox and log, newest first.
        Index("ix_notifications_user", "user_id", "medium", "id"),
        # Delivery reports name the provider's id.
        Index("ix_notifications_provider_message", "provider", "provider_message_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    event_type: Mapped[str] = mapped_column(String(100))
    event_time: Mapped[datetime] = mapped_column(UTCDateTime)
    category: Mapped[Category] = mapped_column(stored_enum(Category, "notification_category"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    medium: Mapped[Medium] = mapped_column(stored_enum(Medium, "notification_medium"))
    target: Mapped[str] = mapped_column(String(32), default="")
    device_id: Mapped[int | None] = mapped_column(
        ForeignKey("push_devices.id", ondelete="SET NULL")
    )
    # The email address or phone number as it was when the event came; push: the device's.
    address: Mapped[str | None] = mapped_column(String(254))
    locale: Mapped[str] = mapped_column(String(8))
    # The event's data the templates render (never a secret: the reset link is derived
    # when sending).
    data: Mapped[dict[str, Any]] = mapped_column(JSON().with_variant(JSONB(), "postgresql"))
    status: Mapped[NotificationStatus] = mapped_column(
        stored_enum(NotificationStatus, "notification_status")
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    last_error: Mapped[str | None] = mapped_column(Text)
    # In-app: what the inbox shows; read_at is when the user marked it read.
    title: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str | None] = mapped_column(Text)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
