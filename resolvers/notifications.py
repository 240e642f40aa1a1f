"""Notification resolvers: the viewer's devices, preferences and inbox; staff's delivery
log and template preview; the live inbox."""

from dataclasses import dataclass
from datetime import time
from typing import Any

import strawberry
from strawberry import Info

from dataloaders.notifications import InboxEntriesByIdLoader
from domains.errors import InvalidInput, NotFound
from domains.events.cloudevent import CloudEvent
from domains.events.subject import USER
from domains.notifications import device as devices
from domains.notifications import preferences as settings
from domains.notifications.channel import PushPlatform
from domains.notifications.device import DeviceRow
from domains.notifications.inbox import INBOX_ORDER, InboxRow, inbox_page, mark_read, unread_count
from domains.notifications.log import LOG_ORDER, DeliveryRow, delivery_log
from domains.notifications.models import Category, Medium
from domains.notifications.preferences import PreferenceChange, Preferences
from domains.notifications.rules import RULES
from domains.notifications.sms import sms_length
from domains.notifications.templates import Rendered, Templates
from resolvers.context import Context
from resolvers.customers import customer_by_pk
from resolvers.live import LiveEvent, event_fields, live
from resolvers.relay import Connection, connection_from_page, pk_of, window_from_arguments

TEMPLATES = Templates()
# A preview shows where the reset link goes, never a working token.
PREVIEW_LINK = "https://kabinet.example/reset-password?token=PREVIEW"
MAX_MARKED = 100


async def my_devices(info: Info[Context]) -> list[DeviceRow]:
    async with info.context.db.read() as reader:
        return await devices.devices_of(reader, info.context.signed_in.user_id)


async def register_push_device(
    info: Info[Context], platform: PushPlatform, token: str, app_id: str, locale: str
) -> DeviceRow:
    context = info.context
    return await devices.register_device(
        context.db,
        context.signed_in.user_id,
        platform=platform,
        token=token,
        app_id=app_id,
        locale=locale,
        now=context.auth.clock.now(),
    )


async def unregister_push_device(info: Info[Context], id: strawberry.ID) -> bool:
    await devices.unregister_device(
        info.context.db, info.context.signed_in.user_id, pk_of(id, "PushDevice")
    )
    return True


@dataclass(frozen=True, slots=True)
class PreferenceEntry:
    category: Category
    medium: Medium
    enabled: bool


def preference_entries(root: Preferences) -> list[PreferenceEntry]:
    """Every category on every medium, security always on."""
    return [
        PreferenceEntry(category, medium, root.allows(category, medium))
        for category in Category
        for medium in Medium
    ]


def quiet_start(root: Preferences) -> time | None:
    return root.quiet_hours[0] if root.quiet_hours else None


def quiet_end(root: Preferences) -> time | None:
    return root.quiet_hours[1] if root.quiet_hours else None


async def notification_preferences(info: Info[Context]) -> Preferences:
    async with info.context.db.read() as reader:
        return await settings.preferences_of(reader, info.context.signed_in.user_id)


async def update_notification_preferences(
    info: Info[Context],
    changes: list[PreferenceChange],
    locale: str | None,
    time_zone: str | None,
    quiet_hours: tuple[time, time] | None,
    quiet_hours_off: bool,
) -> Preferences:
    if quiet_hours is not None and quiet_hours_off:
        raise InvalidInput("pass quietHours or quietHoursOff, not both")
    options: dict[str, Any] = {}
    if quiet_hours is not None:
        options["quiet_hours"] = quiet_hours
    elif quiet_hours_off:
        options["quiet_hours"] = None
    return await settings.update_preferences(
        info.context.db,
        info.context.signed_in.user_id,
        changes=changes,
        locale=locale,
        time_zone=time_zone,
        **options,
    )


async def my_notifications(
    info: Info[Context], first: int | None = None, after: str | None = None
) -> Connection[InboxRow]:
    window = window_from_arguments(INBOX_ORDER, first, after, None, None)
    async with info.context.db.read() as reader:
        page = await inbox_page(reader, info.context.signed_in.user_id, window)
    return connection_from_page(page, INBOX_ORDER)


async def unread_notification_count(info: Info[Context]) -> int:
    async with info.context.db.read() as reader:
        return await unread_count(reader, info.context.signed_in.user_id)


async def mark_notifications_read(info: Info[Context], ids: list[strawberry.ID] | None) -> int:
    if ids is not None and len(ids) > MAX_MARKED:
        raise InvalidInput(f"mark at most {MAX_MARKED} at once, or pass no ids for all")
    keys = None if ids is None else [pk_of(id, "InAppNotification") for id in ids]
    context = info.context
    return await mark_read(context.db, context.signed_in.user_id, keys, context.auth.clock.now())


async def notification_log(
    info: Info[Context],
    customer_id: strawberry.ID,
    first: int | None = None,
    after: str | None = None,
) -> Connection[DeliveryRow]:
    customer = await customer_by_pk(info, pk_of(customer_id, "Customer"))
    window = window_from_arguments(LOG_ORDER, first, after, None, None)
    async with info.context.db.read() as reader:
        page = await delivery_log(reader, customer.user_id, window)
    return connection_from_page(page, LOG_ORDER)


@dataclass(frozen=True, slots=True)
class Preview:
    rendered: Rendered
    medium: Medium

    @property
    def subject(self) -> str:
        return self.rendered.subject

    @property
    def text(self) -> str:
        return self.rendered.text

    @property
    def html(self) -> str | None:
        return self.rendered.html

    @property
    def sms_segments(self) -> int | None:
        return sms_length(self.text).segments if self.medium is Medium.SMS else None

    @property
    def sms_encoding(self) -> str | None:
        return sms_length(self.text).encoding if self.medium is Medium.SMS else None


def notification_preview(
    event_type: str, medium: Medium, locale: str, data: dict[str, Any]
) -> Preview:
    """The message an event of `event_type` with `data` would make, as sent."""
    rule = RULES.get(event_type)
    if rule is None:
        raise InvalidInput(f"no notification is sent for {event_type[:100]!r}")
    if medium not in rule.media:
        raise InvalidInput(f"{event_type} is not sent by {medium.value}")
    if not isinstance(data, dict):
        raise InvalidInput("data is a JSON object")
    context = dict(data)
    if rule.reset_link:
        context["link"] = PREVIEW_LINK
    return Preview(TEMPLATES.render(event_type, medium, locale, context), medium)


# Live: the viewer's own inbox, each entry as it lands.


@dataclass(frozen=True, slots=True)
class Received(LiveEvent):
    notification_id: int


def _received(event: CloudEvent) -> Received:
    return Received(**event_fields(event), notification_id=event.data["notification_id"])


async def _own_inbox(info: Info[Context]) -> str:
    return USER.of(info.context.signed_in.user_id)


notification_received = live({"notification.received"}, _received, _own_inbox)


async def received_notification(root: Received, info: Info[Context]) -> InboxRow:
    entry = await info.context.loaders.of(InboxEntriesByIdLoader).load(root.notification_id)
    if entry is None or entry.user_id != info.context.signed_in.user_id:
        raise NotFound("notification")
    return entry
