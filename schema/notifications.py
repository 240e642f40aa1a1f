"""The notifications subgraph: push devices, preferences, the in-app inbox and its live
stream, staff's delivery log and template preview; and the consumer that plans each
event's messages (domains/notifications/plan.py)."""

from datetime import datetime, time

import strawberry
from strawberry.scalars import JSON

from domains.notifications.channel import PushPlatform
from domains.notifications.device import DeviceRow, forget_user_devices
from domains.notifications.inbox import InboxRow
from domains.notifications.log import DeliveryRow
from domains.notifications.models import Category, Medium, NotificationStatus
from domains.notifications.plan import Planner
from domains.notifications.preferences import PreferenceChange
from domains.notifications.templates import Templates
from resolvers import notifications as notification_resolvers
from resolvers.rest import notifications as notification_rest
from schema.access import Access
from schema.plugin import Domain
from schema.shared import Connection, is_row, node_id

CONSUMER_NAME = "notifications"

Platform = strawberry.enum(PushPlatform, name="PushPlatform")
NotificationCategory = strawberry.enum(
    Category, name="NotificationCategory", description="What a message is about."
)
NotificationMedium = strawberry.enum(
    Medium, name="NotificationMedium", description="Where a message goes."
)
DeliveryStatus = strawberry.enum(NotificationStatus, name="NotificationStatus")


@strawberry.type(description="A device of the viewer's that gets push messages.")
class PushDevice:
    id: strawberry.ID = node_id("PushDevice")
    platform: Platform
    app_id: str = strawberry.field(description="The Android package or iOS bundle id.")
    locale: str
    registered_at: datetime

    is_type_of = is_row(DeviceRow)


@strawberry.type(description="One entry of the viewer's in-app inbox.")
class InAppNotification:
    id: strawberry.ID = node_id("InAppNotification")
    event_type: str
    category: NotificationCategory
    title: str | None
    body: str | None
    created_at: datetime
    read_at: datetime | None

    is_type_of = is_row(InboxRow)


@strawberry.type(description="One message to a customer on one medium, and how it went.")
class NotificationDelivery:
    id: strawberry.ID = node_id("NotificationDelivery")
    event_id: strawberry.ID
    event_type: str
    category: NotificationCategory
    medium: NotificationMedium
    address: str | None = strawberry.field(description="Email or phone; none for push, in-app.")
    status: DeliveryStatus
    attempts: int
    provider: str | None
    provider_message_id: str | None
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None

    is_type_of = is_row(DeliveryRow)


@strawberry.type(description="Whether a category is sent on a medium.")
class NotificationPreference:
    category: NotificationCategory
    medium: NotificationMedium
    enabled: bool


@strawberry.type(
    description="The viewer's notification settings; security messages ignore them all."
)
class NotificationPreferences:
    locale: str
    time_zone: str = strawberry.field(description="IANA zone quiet hours are read in.")
    quiet_hours_start: time | None = strawberry.field(
        resolver=notification_resolvers.quiet_start,
        description="SMS and push wait from this local time...",
    )
    quiet_hours_end: time | None = strawberry.field(
        resolver=notification_resolvers.quiet_end, description="...until this one."
    )
    channels: list[NotificationPreference] = strawberry.field(
        resolver=notification_resolvers.preference_entries,
        description="Every category on every medium.",
    )


@strawberry.input
class NotificationPreferenceInput:
    category: NotificationCategory
    medium: NotificationMedium
    enabled: bool


@strawberry.input(description="Local times; over midnight when start is after end.")
class QuietHoursInput:
    start: time
    end: time


@strawberry.type(description="A message rendered from a template for sample data.")
class NotificationPreview:
    subject: str = strawberry.field(description="Email subject, push or inbox title.")
    text: str
    html: str | None
    sms_segments: int | None = strawberry.field(description="SMS only: segments it takes.")
    sms_encoding: str | None = strawberry.field(description="SMS only: GSM-7 or UCS-2.")


@strawberry.type
class Query:
    my_devices: list[PushDevice] = strawberry.field(
        resolver=notification_resolvers.my_devices,
        description="The viewer's devices registered for push.",
    )
    notification_preferences: NotificationPreferences = strawberry.field(
        resolver=notification_resolvers.notification_preferences
    )
    my_notifications: Connection[InAppNotification] = strawberry.field(
        resolver=notification_resolvers.my_notifications,
        description="The viewer's in-app inbox, newest first.",
    )
    unread_notification_count: int = strawberry.field(
        resolver=notification_resolvers.unread_notification_count
    )
    notification_log: Connection[NotificationDelivery] = strawberry.field(
        resolver=notification_resolvers.notification_log,
        description="Staff: every message sent to a customer, newest first.",
    )

    @strawberry.field(description="Staff: a template rendered for sample event data.")
    def notification_preview(
        self, event_type: str, medium: NotificationMedium, locale: str, data: JSON
    ) -> NotificationPreview:
        return notification_resolvers.notification_preview(  # type: ignore[return-value]
            event_type, medium, locale, data
        )


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Registers this device's push token for the viewer.")
    async def register_push_device(
        self, info: strawberry.Info, platform: Platform, token: str, app_id: str, locale: str
    ) -> PushDevice:
        return await notification_resolvers.register_push_device(  # type: ignore[return-value]
            info, platform, token, app_id, locale
        )

    @strawberry.mutation(description="Stops push to one of the viewer's devices.")
    async def unregister_push_device(self, info: strawberry.Info, id: strawberry.ID) -> bool:
        return await notification_resolvers.unregister_push_device(info, id)

    @strawberry.mutation(description="Changes what is given; the rest stays.")
    async def update_notification_preferences(
        self,
        info: strawberry.Info,
        preferences: list[NotificationPreferenceInput] | None = None,
        locale: str | None = None,
        time_zone: str | None = None,
        quiet_hours: QuietHoursInput | None = None,
        quiet_hours_off: bool = False,
    ) -> NotificationPreferences:
        return await notification_resolvers.update_notification_preferences(  # type: ignore[return-value]
            info,
            [
                PreferenceChange(Category(item.category), Medium(item.medium), item.enabled)
                for item in preferences or ()
            ],
            locale,
            time_zone,
            (quiet_hours.start, quiet_hours.end) if quiet_hours is not None else None,
            quiet_hours_off,
        )

    @strawberry.mutation(description="Marks inbox entries read (no ids: all); returns how many.")
    async def mark_notifications_read(
        self, info: strawberry.Info, ids: list[strawberry.ID] | None = None
    ) -> int:
        return await notification_resolvers.mark_notifications_read(info, ids)


@strawberry.type(description="A message landed in the viewer's inbox.")
class NotificationReceivedEvent:
    event_id: strawberry.ID = strawberry.field(
        description="Pass it as `after` when subscribing again, to get what came since."
    )
    occurred_at: datetime
    notification: InAppNotification = strawberry.field(
        resolver=notification_resolvers.received_notification
    )


@strawberry.type
class Subscription:
    notification_received: NotificationReceivedEvent = strawberry.subscription(
        resolver=notification_resolvers.notification_received,
        description="The viewer's inbox as messages arrive.",
    )


domain = Domain(
    name="notifications",
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    access={
        "Query.myDevices": Access.SIGNED_IN,
        "Query.notificationPreferences": Access.SIGNED_IN,
        "Query.myNotifications": Access.SIGNED_IN,
        "Query.unreadNotificationCount": Access.SIGNED_IN,
        "Query.notificationLog": Access.STAFF,
        "Query.notificationPreview": Access.STAFF,
        "Mutation.registerPushDevice": Access.SIGNED_IN,
        "Mutation.unregisterPushDevice": Access.SIGNED_IN,
        "Mutation.updateNotificationPreferences": Access.SIGNED_IN,
        "Mutation.markNotificationsRead": Access.SIGNED_IN,
        "Subscription.notificationReceived": Access.SIGNED_IN,
        "PushDevice": Access.SIGNED_IN,
        "InAppNotification": Access.SIGNED_IN,
        "InAppNotificationConnection": Access.SIGNED_IN,
        "InAppNotificationEdge": Access.SIGNED_IN,
        "NotificationPreferences": Access.SIGNED_IN,
        "NotificationPreference": Access.SIGNED_IN,
        "NotificationReceivedEvent": Access.SIGNED_IN,
        "NotificationDelivery": Access.STAFF,
        "NotificationDeliveryConnection": Access.STAFF,
        "NotificationDeliveryEdge": Access.STAFF,
        "NotificationPreview": Access.STAFF,
    },
    rest=notification_rest.ROUTES,
    events=("notification",),
    consumers={CONSUMER_NAME: Planner(Templates()).handlers()},
    sessions_ended=(forget_user_devices,),
)
