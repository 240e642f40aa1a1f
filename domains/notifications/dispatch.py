"""The dispatcher: sends queued notifications, retries them, and records how each ended.

A round claims the due rows (`FOR UPDATE SKIP LOCKED`, so several workers share them) and,
in the same short transaction, either defers one to the end of its recipient's quiet hours
(SMS and push, not security) or leases it: its attempt is counted and it is not due again
for `lease`, so a worker that dies mid-send leaves it to be sent later rather than lost.
Sending happens after that commit, outside any transaction; each outcome then updates its
row: sent (the provider's message id, for delivery reports), queued again after
`backoff * 2^(attempts-1)` (or the provider's `retry_after`) on a temporary failure, failed
on a permanent one or once `max_attempts` are spent (the dead letter, kept with its last
error for staff to read). A dead device token is deleted.

The reset link is derived here, from the request id the event carries and the deployment's
key, so it exists only in the email itself.
"""

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import bindparam, literal_column, select, update

from domains.clock import Clock
from domains.database import Database
from domains.identity.password_reset import reset_link_token
from domains.notifications.channel import (
    Channel,
    ChannelKind,
    DeliveryError,
    OutgoingMessage,
    PermanentFailure,
    RecipientGone,
    TemporaryFailure,
)
from domains.notifications.device import DEVICE_TOKEN_BY_ID, forget_token
from domains.notifications.metrics import NotificationMetrics
from domains.notifications.models import Category, Medium, Notification, NotificationStatus
from domains.notifications.preferences import Preferences, preferences_of
from domains.notifications.rules import RULES
from domains.notifications.templates import Templates, push_data
from domains.reads import Read
from domains.writes import writer

log = logging.getLogger(__name__)

notifications = Notification.__table__

_MAX_ERROR = 1000
# Seconds before trying again after a round that failed as a whole.
FAILED_ROUND_WAIT = 5.0


@dataclass(frozen=True, slots=True)
class DueRow:
    id: int
    event_type: str
    event_time: datetime
    category: Category
    user_id: int
    medium: Medium
    device_id: int | None
    address: str | None
    locale: str
    data: dict[str, Any]
    attempts: int


DUE = Read(
    DueRow,
    select(*(notifications.c[name] for name in DueRow.__slots__))  # type: ignore[attr-defined]
    .where(
        # A constant, not a bind: it matches the due index's predicate.
        notifications.c.status == literal_column(f"'{NotificationStatus.QUEUED.value}'"),
        notifications.c.next_attempt_at <= bindparam("now"),
    )
    .order_by(notifications.c.next_attempt_at, notifications.c.id)
    .limit(bindparam("batch"))
    .with_for_update(skip_locked=True),
)


@dataclass(frozen=True, slots=True)
class ResetLinks:
    """Password-reset links: the page's URL with the token only the key's holder can make."""

    key: bytes
    url: str

    def link(self, reset_id: uuid.UUID) -> str:
        separator = "&" if "?" in self.url else "?"
        return f"{self.url}{separator}{urlencode({'token': reset_link_token(self.key, reset_id)})}"


class Dispatcher:
    def __init__(
        self,
        db: Database,
        channels: Mapping[ChannelKind, Channel],
        *,
        clock: Clock,
        links: ResetLinks,
        templates: Templates | None = None,
        max_attempts: int = 5,
        backoff: timedelta = timedelta(seconds=30),
        lease: timedelta = timedelta(minutes=5),
        batch_size: int = 100,
        poll_interval: float = 0.2,
        metrics: NotificationMetrics | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts is at least 1")
        self._db = db
        self._channels = dict(channels)
        self._clock = clock
        self._links = links
        self._templates = templates or Templates()
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._lease = lease
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._metrics = metrics

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds until `stop`; idle, it looks again every `poll_interval` seconds, and
        after a failed round (the database away) a few seconds later."""
        while not stop.is_set():
            wait = self._poll_interval
            try:
                handled = await self.dispatch_due()
            except Exception:
                log.exception("notification dispatch round failed")
                handled, wait = 0, max(wait, FAILED_ROUND_WAIT)
            if handled < self._batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)

    async def dispatch_due(self) -> int:
        """One round: claims what is due now, sends it, records the outcomes; returns how
        many rows it claimed (deferred ones included)."""
        now = self._clock.now()
        leased: list[DueRow] = []
        async with self._db.transaction() as tx:
            rows = await writer(tx).fetch(DUE, now=now, batch=self._batch_size)
            preferences: dict[int, Preferences] = {}
            for row in rows:
                if row.user_id not in preferences:
                    preferences[row.user_id] = await preferences_of(writer(tx), row.user_id)
                until = preferences[row.user_id].quiet_until(row.category, row.medium, now)
                if until is not None:
                    await tx.execute(_set(row.id, next_attempt_at=until))
                else:
                    await tx.execute(
                        _set(row.id, attempts=row.attempts + 1, next_attempt_at=now + self._lease)
                    )
                    leased.append(row)
        await asyncio.gather(*(self._deliver(row) for row in leased))
        return len(rows)

    async def _deliver(self, row: DueRow) -> None:
        attempt = row.attempts + 1
        message: OutgoingMessage | None = None
        try:
            message = await self._message(row)
            sent = await self._channel(message).send(message)
        except TemporaryFailure as error:
            await self._temporary(row, attempt, error, error.retry_after)
        except PermanentFailure as error:
            if isinstance(error, RecipientGone) and row.device_id is not None and message:
                await forget_token(self._db, row.device_id, message.to)
            await self._finish(row, NotificationStatus.FAILED, error=str(error))
            self._count("failed", row, error.provider)
        except Exception as error:  # a channel's bug or a broken connection: try again
            log.warning("notification %d: %r", row.id, error)
            failure = DeliveryError("unknown", type(error).__name__, str(error))
            await self._temporary(row, attempt, failure, None)
        else:
            now = self._clock.now()
            await self._finish(
                row,
                NotificationStatus.SENT,
                provider=sent.provider,
                provider_message_id=sent.provider_message_id,
                sent_at=now,
            )
            if self._metrics is not None:
                latency = max(0.0, (now - row.event_time).total_seconds())
                self._metrics.sent(row.medium.value, sent.provider, latency)

    def _channel(self, message: OutgoingMessage) -> Channel:
        channel = self._channels.get(message.channel)
        if channel is None:
            raise PermanentFailure("none", "NO_CHANNEL", f"no {message.channel} channel configured")
        return channel

    async def _message(self, row: DueRow) -> OutgoingMessage:
        """The row rendered for its medium; PermanentFailure when it cannot be."""
        context = dict(row.data)
        if RULES[row.event_type].reset_link:
            context["link"] = self._links.link(uuid.UUID(row.data["reset_id"]))
        try:
            rendered = self._templates.render(row.event_type, row.medium, row.locale, context)
        except Exception as error:
            raise PermanentFailure("templates", "RENDER", str(error)) from error
        message = OutgoingMessage(
            channel=ChannelKind(row.medium.value),
            to=row.address or "",
            text=rendered.text,
            idempotency_key=f"kabinet-notification-{row.id}",
            subject=rendered.subject,
            html=rendered.html,
        )
        if row.medium is Medium.PUSH:
            message = await self._push_message(row, message, context)
        return message

    async def _push_message(
        self, row: DueRow, message: OutgoingMessage, context: dict[str, Any]
    ) -> OutgoingMessage:
        async with self._db.read() as reader:
            found = (
                await reader.fetch(DEVICE_TOKEN_BY_ID, device_id=row.device_id)
                if row.device_id is not None
                else []
            )
        if not found or found[0].user_id != row.user_id:
            # Unregistered, or moved to another account since: never push it there.
            raise PermanentFailure("push", "DEVICE_GONE", "the device is no longer registered")
        (device,) = found
        return OutgoingMessage(
            channel=message.channel,
            to=device.token,
            text=message.text,
            idempotency_key=message.idempotency_key,
            subject=message.subject,
            data=push_data(row.event_type, context),
            platform=device.platform,
            app_id=device.app_id,
        )

    async def _temporary(
        self, row: DueRow, attempt: int, error: DeliveryError, retry_after: timedelta | None
    ) -> None:
        if attempt >= self._max_attempts:
            log.error("notification %d: dead letter after %d attempts: %s", row.id, attempt, error)
            await self._finish(
                row, NotificationStatus.FAILED, error=f"gave up after {attempt} attempts: {error}"
            )
            self._count("dead_lettered", row, error.provider)
            return
        delay = self._backoff * 2 ** (attempt - 1)
        if retry_after is not None and retry_after > delay:
            delay = retry_after
        await self._finish(
            row,
            NotificationStatus.QUEUED,
            error=str(error),
            next_attempt_at=self._clock.now() + delay,
        )
        self._count("retried", row, error.provider)

    async def _finish(
        self, row: DueRow, status: NotificationStatus, *, error: str | None = None, **values: Any
    ) -> None:
        async with self._db.transaction() as tx:
            await tx.execute(
                update(notifications)
                .where(
                    notifications.c.id == row.id,
                    notifications.c.status == NotificationStatus.QUEUED,
                )
                .values(status=status, last_error=error[:_MAX_ERROR] if error else None, **values)
            )

    def _count(self, outcome: str, row: DueRow, provider: str) -> None:
        if self._metrics is not None:
            getattr(self._metrics, outcome)(row.medium.value, provider)


def _set(notification_id: int, **values: Any) -> Any:
    return update(notifications).where(notifications.c.id == notification_id).values(**values)
