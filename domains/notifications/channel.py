"""Delivery channels: the one interface every way of reaching a customer is sent through.

A channel takes an `OutgoingMessage`, already rendered for it (templates, SMS segments and
push payload limits are the domain's job), and answers `Sent` with the provider's own id
for the message, which a later delivery report names. A failure says what to do next:
`TemporaryFailure` (provider down, throttled, timed out: retry later, after `retry_after`
when the provider said so), `PermanentFailure` (a bad address, a payload the provider
refuses: retrying sends nothing), and its kind `RecipientGone` (the device token is
unregistered or invalid: delete it, it will never work again).

`idempotency_key` is the notification record's own key, passed to the providers that accept
one (the SMS gateways, APNs' `apns-id`), so a retry after a lost answer does not send twice
where the provider can tell.

The SMTP, SMS gateway, FCM and APNs clients and the log sink are adapters (adapters/),
chosen by the wiring; this module imports none of them.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol


class ChannelKind(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"


class PushPlatform(StrEnum):
    """Which push service a device token belongs to: FCM for Android, APNs for iOS."""

    ANDROID = "android"
    IOS = "ios"


class PushPriority(StrEnum):
    # APNs 10 / FCM HIGH wake the device now; 5 / NORMAL may be batched for battery.
    HIGH = "high"
    NORMAL = "normal"


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One message to one address on one channel.

    `to` is an email address, an E.164 phone number (`+79161234567`) or a device token.
    Email uses `subject`, `text` and `html`; SMS `text`; push `subject` as the title,
    `text` as the body, `data` as the app's key/value payload, `platform` and `app_id`
    (the iOS bundle id is APNs' topic). `expires_at` is when an undelivered push stops
    being worth showing.
    """

    channel: ChannelKind
    to: str
    text: str
    idempotency_key: str
    subject: str = ""
    html: str | None = None
    data: Mapping[str, str] = field(default_factory=dict)
    platform: PushPlatform | None = None
    app_id: str | None = None
    priority: PushPriority = PushPriority.HIGH
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Sent:
    """The provider accepted the message; `provider_message_id` is its id for it."""

    provider: str
    provider_message_id: str


class DeliveryError(Exception):
    """A channel could not send; `reason` is the provider's own code (`UNREGISTERED`)."""

    def __init__(self, provider: str, reason: str, message: str = "") -> None:
        super().__init__(f"{provider}: {reason}" + (f": {message}" if message else ""))
        self.provider = provider
        self.reason = reason
        self.detail = message


class TemporaryFailure(DeliveryError):
    """Try again later: the provider is down, throttling, or its answer was lost."""

    def __init__(
        self,
        provider: str,
        reason: str,
        message: str = "",
        *,
        retry_after: timedelta | None = None,
    ) -> None:
        super().__init__(provider, reason, message)
        self.retry_after = retry_after


class PermanentFailure(DeliveryError):
    """Retrying would fail the same way: a bad address, a refused payload, bad credentials."""


class RecipientGone(PermanentFailure):
    """The device token is unregistered or invalid for good: delete it."""


class Channel(Protocol):
    async def send(self, message: OutgoingMessage) -> Sent:
        """Hand the message to the provider; raises a `DeliveryError` when it is not taken."""
        ...


class DeliveryStatus(StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """A provider's later word on a sent message (an SMS gateway's signed callback)."""

    provider: str
    provider_message_id: str
    status: DeliveryStatus
    at: datetime
    error: str | None = None


class PushByPlatform:
    """One push channel over FCM and APNs: the device's platform picks the service. A
    platform with no service configured refuses its messages for good."""

    def __init__(self, *, android: Channel | None, ios: Channel | None) -> None:
        self._by_platform = {PushPlatform.ANDROID: android, PushPlatform.IOS: ios}

    async def send(self, message: OutgoingMessage) -> Sent:
        if message.platform is None:
            raise PermanentFailure("push", "NO_PLATFORM", "a push message names its platform")
        channel = self._by_platform[message.platform]
        if channel is None:
            raise PermanentFailure("push", "NO_CHANNEL", f"no {message.platform} push configured")
        return await channel.send(message)
