"""What each event tells whom, on which media: the one table of the notification service.

An event type maps to a `Rule`: its category (preferences are per category; security ones
bypass them and quiet hours), who the recipient is (the customer an event is about, or the
user), and its deliveries, each one message on the first medium of its list the recipient
can get and allows taking it (`by(PUSH, SMS)`: push, else SMS). A medium "can get" when
there is an address: an email, a phone number, a registered device; in-app always.

A rule or a delivery may hold only `when` its conditions hold on the event's data (all of
them: `Equals`, `AtLeast`); a missing field holds no condition but `Equals(field, None)`.
`looks_up` names what the message needs that the event lacks (domains/notifications/
lookups.py), read when it is planned.

Adding an event is adding a row, with its templates (templates/<event type>/<medium>/).
Identity has no "sign-in from a new device" event yet; when it does, its row is a
`Category.SECURITY` one to the user, by push else email.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from domains.notifications.lookups import (
    SUBSCRIPTION_SERVICE,
    TARIFF_NAMES,
    TICKET_SUBJECT,
    Lookup,
)
from domains.notifications.models import Category, Medium


class Recipient(StrEnum):
    CUSTOMER = "customer"  # the event's data names `customer_id`
    USER = "user"  # the event's data names `user_id`


class Condition(Protocol):
    def holds(self, data: Mapping[str, Any]) -> bool: ...


@dataclass(frozen=True, slots=True)
class Equals:
    """The field is `value` (None: the event has no such field)."""

    field: str
    value: str | bool | None

    def holds(self, data: Mapping[str, Any]) -> bool:
        found = data.get(self.field)
        # `type` too: JSON's false is not 0, "true" is not True.
        return found == self.value and type(found) is type(self.value)


@dataclass(frozen=True, slots=True)
class AtLeast:
    """The field is an integer of at least `value`."""

    field: str
    value: int

    def holds(self, data: Mapping[str, Any]) -> bool:
        found = data.get(self.field)
        return type(found) is int and found >= self.value


def _all(conditions: tuple[Condition, ...], data: Mapping[str, Any]) -> bool:
    return all(condition.holds(data) for condition in conditions)


@dataclass(frozen=True, slots=True)
class Delivery:
    media: tuple[Medium, ...]  # tried in order: the first the recipient can get
    when: tuple[Condition, ...] = ()

    def applies(self, data: Mapping[str, Any]) -> bool:
        return _all(self.when, data)


def by(*media: Medium, when: tuple[Condition, ...] = ()) -> Delivery:
    """One message, on the first of `media` the recipient can get."""
    return Delivery(media, when)


@dataclass(frozen=True, slots=True)
class Rule:
    category: Category
    recipient: Recipient
    deliveries: tuple[Delivery, ...]
    when: tuple[Condition, ...] = ()
    looks_up: tuple[Lookup, ...] = ()
    # The message carries the password-reset link (a reset's or an invitation's), derived
    # when it is sent.
    reset_link: bool = False

    @property
    def media(self) -> frozenset[Medium]:
        return frozenset(medium for delivery in self.deliveries for medium in delivery.media)

    def applies(self, data: Mapping[str, Any]) -> bool:
        return _all(self.when, data)


RULES: Mapping[str, Rule] = {
    "payment.created": Rule(
        Category.BILLING, Recipient.CUSTOMER, (by(Medium.PUSH, Medium.SMS), by(Medium.IN_APP))
    ),
    "invoice.issued": Rule(
        Category.BILLING, Recipient.CUSTOMER, (by(Medium.EMAIL), by(Medium.IN_APP))
    ),
    "invoice.overdue": Rule(
        Category.BILLING, Recipient.CUSTOMER, (by(Medium.EMAIL), by(Medium.SMS), by(Medium.IN_APP))
    ),
    # Before the due date by email; on the day and after by SMS as well.
    "invoice.payment_reminder": Rule(
        Category.BILLING,
        Recipient.CUSTOMER,
        (by(Medium.EMAIL), by(Medium.SMS, when=(AtLeast("offset_days", 0),))),
    ),
    "identity.password_reset_requested": Rule(
        Category.SECURITY, Recipient.USER, (by(Medium.EMAIL),), reset_link=True
    ),
    "ticket.created": Rule(
        Category.SUPPORT, Recipient.CUSTOMER, (by(Medium.PUSH, Medium.EMAIL), by(Medium.IN_APP))
    ),
    # An operator's reply the customer can see: never an internal note, nor their own words.
    # The reply's text stays in the thread (the app shows it); the message names the ticket.
    "ticket.message_added": Rule(
        Category.SUPPORT,
        Recipient.CUSTOMER,
        (by(Medium.PUSH, Medium.EMAIL), by(Medium.IN_APP)),
        when=(Equals("author_kind", "operator"), Equals("internal", False)),
        looks_up=(TICKET_SUBJECT,),
    ),
    "ticket.status_changed": Rule(
        Category.SUPPORT,
        Recipient.CUSTOMER,
        (by(Medium.IN_APP), by(Medium.EMAIL)),
        when=(Equals("new_status", "resolved"),),
        looks_up=(TICKET_SUBJECT,),
    ),
    # Billing's suspension for debt and its end; a pause's end (customers' event of the
    # same type, with `reason: "pause"`) is not told.
    "subscription.suspended": Rule(
        Category.SERVICE,
        Recipient.CUSTOMER,
        (by(Medium.SMS), by(Medium.EMAIL), by(Medium.IN_APP)),
        looks_up=(SUBSCRIPTION_SERVICE,),
    ),
    "subscription.resumed": Rule(
        Category.SERVICE,
        Recipient.CUSTOMER,
        (by(Medium.SMS), by(Medium.EMAIL), by(Medium.IN_APP)),
        when=(Equals("reason", None),),
        looks_up=(SUBSCRIPTION_SERVICE,),
    ),
    "subscription.paused": Rule(
        Category.SERVICE,
        Recipient.CUSTOMER,
        (by(Medium.EMAIL), by(Medium.IN_APP)),
        looks_up=(SUBSCRIPTION_SERVICE,),
    ),
    "tariff.changed": Rule(
        Category.SERVICE,
        Recipient.CUSTOMER,
        (by(Medium.EMAIL), by(Medium.IN_APP)),
        looks_up=(TARIFF_NAMES, SUBSCRIPTION_SERVICE),
    ),
    # A new account's first password: security, so no preference or quiet hour holds it.
    "identity.invitation_created": Rule(
        Category.SECURITY, Recipient.USER, (by(Medium.EMAIL),), reset_link=True
    ),
}
