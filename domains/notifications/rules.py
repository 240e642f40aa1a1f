"""What each event tells whom, on which media: the one table of the notification service.

An event type maps to a `Rule`: its category (preferences are per category; security ones
bypass them and quiet hours), who the recipient is (the customer an event is about, or the
user), and its deliveries, each a list of media tried in order, the first the recipient can
get and allows taking it ("push, else SMS"). A medium "can get" when there is an address:
an email, a phone number, a registered device; in-app always.

Adding an event is adding a row, with its templates (templates/<event type>/<medium>/);
`ticket.created` and the operator's reply will be, once the support domain publishes them:
    "ticket.created": Rule(Category.SUPPORT, Recipient.CUSTOMER,
                           ((Medium.PUSH, Medium.EMAIL), (Medium.IN_APP,))),
Identity has no "sign-in from a new device" event yet; when it does, its row is a
`Category.SECURITY` one to the user, by push else email.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from domains.notifications.models import Category, Medium


class Recipient(StrEnum):
    CUSTOMER = "customer"  # the event's data names `customer_id`
    USER = "user"  # the event's data names `user_id`


@dataclass(frozen=True, slots=True)
class Rule:
    category: Category
    recipient: Recipient
    # Each delivery is one message: on the first medium of its list the recipient can get.
    deliveries: tuple[tuple[Medium, ...], ...]
    # The message carries the password-reset link (a reset's or an invitation's), derived
    # when it is sent.
    reset_link: bool = False

    @property
    def media(self) -> frozenset[Medium]:
        return frozenset(medium for delivery in self.deliveries for medium in delivery)


RULES: Mapping[str, Rule] = {
    "payment.created": Rule(
        Category.BILLING, Recipient.CUSTOMER, ((Medium.PUSH, Medium.SMS), (Medium.IN_APP,))
    ),
    "invoice.issued": Rule(
        Category.BILLING, Recipient.CUSTOMER, ((Medium.EMAIL,), (Medium.IN_APP,))
    ),
    "invoice.overdue": Rule(
        Category.BILLING,
        Recipient.CUSTOMER,
        ((Medium.EMAIL,), (Medium.SMS,), (Medium.IN_APP,)),
    ),
    "identity.password_reset_requested": Rule(
        Category.SECURITY, Recipient.USER, ((Medium.EMAIL,),), reset_link=True
    ),
    # A new account's first password: security, so no preference or quiet hour holds it.
    "identity.invitation_created": Rule(
        Category.SECURITY, Recipient.USER, ((Medium.EMAIL,),), reset_link=True
    ),
}
