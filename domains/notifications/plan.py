"""From an event to its notifications: the consumer's handler.

It runs in the consumer's claim transaction (domains/events/consumer.py), so an event is
planned once, by its rule (domains/notifications/rules.py: its conditions on the event, what
it looks up); each message is a `notifications` row, unique per (event, user, medium,
target), a second guard should the claim ever be lost. Outside messages are queued for the
dispatcher (domains/notifications/dispatch.py), which renders and sends them after the
commit; an in-app message is rendered here and is in the inbox at the commit, with a
`notification.received` event for the live stream.
"""

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from domains.customers.models import Customer
from domains.events.cloudevent import CloudEvent
from domains.events.consumer import Handler
from domains.identity.models import User
from domains.notifications.device import DEVICE_TOKENS_BY_USER_ID
from domains.notifications.events import notification_received
from domains.notifications.models import Medium, Notification, NotificationStatus
from domains.notifications.preferences import preferences_of
from domains.notifications.rules import RULES, Recipient, Rule
from domains.notifications.templates import Templates, locale_of
from domains.reads import Read
from domains.writes import writer

users = User.__table__
customers = Customer.__table__
notifications = Notification.__table__


@dataclass(frozen=True, slots=True)
class RecipientRow:
    user_id: int
    email: str
    phone: str | None


RECIPIENT_OF_CUSTOMER = Read(
    RecipientRow,
    select(users.c.id.label("user_id"), users.c.email, customers.c.phone)
    .join(customers, customers.c.user_id == users.c.id)
    .where(customers.c.id == bindparam("customer_id"), users.c.is_active.is_(True)),
)
RECIPIENT_OF_USER = Read(
    RecipientRow,
    select(users.c.id.label("user_id"), users.c.email, customers.c.phone)
    .select_from(users.outerjoin(customers, customers.c.user_id == users.c.id))
    .where(users.c.id == bindparam("of_user"), users.c.is_active.is_(True)),
)

_INSERT = (
    postgresql.insert(notifications)
    .on_conflict_do_nothing(
        index_elements=[
            notifications.c.event_id,
            notifications.c.user_id,
            notifications.c.medium,
            notifications.c.target,
        ]
    )
    .returning(notifications.c.id)
)


@dataclass(frozen=True, slots=True)
class Address:
    target: str
    address: str | None
    device_id: int | None = None
    locale: str | None = None  # a device's own language


class Planner:
    """The handler of every event the rules name, with the templates in-app messages use."""

    def __init__(self, templates: Templates) -> None:
        self.templates = templates

    def handlers(self) -> dict[str, Handler]:
        return dict.fromkeys(RULES, self.plan)

    async def plan(self, session: AsyncSession, event: CloudEvent) -> None:
        rule = RULES[event.type]
        if not rule.applies(event.data):
            return  # not this one (an internal note, a ticket not resolved)
        reader = writer(session)
        data = dict(event.data)
        for lookup in rule.looks_up:
            looked = await lookup.fields(reader, data)
            if looked is None:
                return  # what the message is about is gone: nothing to tell
            data = looked | data
        found = await (
            reader.fetch(RECIPIENT_OF_CUSTOMER, customer_id=event.data["customer_id"])
            if rule.recipient is Recipient.CUSTOMER
            else reader.fetch(RECIPIENT_OF_USER, of_user=event.data["user_id"])
        )
        if not found:
            return  # no active account: nobody to tell
        (recipient,) = found
        preferences = await preferences_of(reader, recipient.user_id)
        tokens = await reader.fetch(DEVICE_TOKENS_BY_USER_ID, user_id=recipient.user_id)

        def addresses(medium: Medium) -> list[Address]:
            if medium is Medium.EMAIL:
                return [Address("", recipient.email)]
            if medium is Medium.SMS:
                return [Address("", recipient.phone)] if recipient.phone else []
            if medium is Medium.PUSH:
                return [Address(str(d.id), None, d.id, d.locale) for d in tokens]
            return [Address("", None)]

        for delivery in rule.deliveries:
            if not delivery.applies(data):
                continue
            for medium in delivery.media:
                chosen = addresses(medium) if preferences.allows(rule.category, medium) else []
                if chosen:
                    for address in chosen:
                        await self._write(
                            session,
                            event,
                            data,
                            rule,
                            recipient.user_id,
                            medium,
                            address,
                            address.locale or preferences.locale,
                        )
                    break

    async def _write(
        self,
        session: AsyncSession,
        event: CloudEvent,
        data: dict[str, Any],
        rule: Rule,
        user_id: int,
        medium: Medium,
        address: Address,
        locale: str,
    ) -> None:
        now = event.time
        values: dict[str, Any] = {
            "event_id": event.id,
            "event_type": event.type,
            "event_time": event.time,
            "category": rule.category,
            "user_id": user_id,
            "medium": medium,
            "target": address.target,
            "device_id": address.device_id,
            "address": address.address,
            "locale": locale_of(locale),
            "data": data,
            "status": NotificationStatus.QUEUED,
            "attempts": 0,
            "next_attempt_at": now,
        }
        if medium is Medium.IN_APP:
            rendered = self.templates.render(event.type, medium, locale, dict(data))
            values |= {
                "status": NotificationStatus.SENT,
                "title": rendered.subject,
                "body": rendered.text,
                "sent_at": now,
            }
        inserted = (await session.execute(_INSERT.values(values))).scalar_one_or_none()
        if inserted is not None and medium is Medium.IN_APP:
            await notification_received(session, notification_id=inserted, user_id=user_id)
