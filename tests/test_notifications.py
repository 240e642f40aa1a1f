"""The notification service through the Kafka-wire broker and PostgreSQL: events planned
once, sent once, retried then dead-lettered, held back by quiet hours, filtered by
preferences (never security ones), devices owned by one user; and the password-reset email,
sent by SMTP to a real server, whose link resets the password."""

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry
from sqlalchemy import insert, select, update

from adapters.kafka_bus import KafkaBus
from adapters.prometheus_notification_metrics import PrometheusNotificationMetrics
from adapters.smtp_channel import SmtpChannel
from domains.clock import ManualClock
from domains.customers.models import Customer
from domains.database import Database
from domains.errors import InvalidInput, NotFound
from domains.events.cloudevent import CloudEvent
from domains.events.consumer import EventConsumer
from domains.events.models import ProcessedEvent
from domains.identity.models import User
from domains.identity.passwords import hash_password
from domains.notifications.channel import (
    ChannelKind,
    OutgoingMessage,
    PushPlatform,
    RecipientGone,
    Sent,
    TemporaryFailure,
)
from domains.notifications.device import devices_of, register_device, unregister_device
from domains.notifications.dispatch import Dispatcher, ResetLinks
from domains.notifications.models import (
    Category,
    Medium,
    Notification,
    NotificationPreference,
    NotificationStatus,
)
from domains.notifications.plan import Planner
from domains.notifications.preferences import PreferenceChange, update_preferences
from domains.notifications.templates import Templates
from domains.outbox import OutboxEvent
from gateway.app import create_app
from gateway.services import reset_link_key
from tests.conftest import app_client, make_settings, migrated_database
from tests.mail_sink import mail_sink
from tests.test_consumer import running

pytestmark = pytest.mark.postgres

notifications = Notification.__table__
KEY = b"k" * 32
RESET_URL = "https://my.kabinet.test/reset-password"
OLD_PASSWORD = "the old passphrase"
# Noon in Moscow, the default time zone: outside the default quiet hours, whatever the hour
# the tests run at.
NOON = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


class RecordingChannel:
    """A channel that keeps what it is given, failing first with the errors it is handed:
    a real implementation of the Channel protocol, for the domain's own rules."""

    def __init__(self, provider: str, failures: list[Exception] | None = None) -> None:
        self.provider = provider
        self.failures = list(failures or [])
        self.sent: list[OutgoingMessage] = []

    async def send(self, message: OutgoingMessage) -> Sent:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(message)
        return Sent(self.provider, f"{self.provider}-{len(self.sent)}")


@pytest_asyncio.fixture
async def notify_url() -> AsyncIterator[str]:
    """A database per test: the dispatcher sends whatever is due in it."""
    async with migrated_database("kabinet_notify") as url:
        yield url


@pytest_asyncio.fixture
async def db(notify_url: str) -> AsyncIterator[Database]:
    database = Database(notify_url)
    yield database
    await database.dispose()


async def make_customer(db: Database, phone: str | None = "+79161234567") -> tuple[int, int]:
    tag = uuid.uuid4().hex[:10]
    async with db.transaction() as tx:
        user_id = (
            await tx.execute(
                insert(User)
                .values(email=f"n{tag}@example.ru", password_hash="x")
                .returning(User.id)
            )
        ).scalar_one()
        customer_id = (
            await tx.execute(
                insert(Customer)
                .values(user_id=user_id, contract_num=f"N-{tag}", full_name="Иванова", phone=phone)
                .returning(Customer.id)
            )
        ).scalar_one()
    return user_id, customer_id


def payment_event(customer_id: int, at: datetime | None = None) -> CloudEvent:
    return CloudEvent(
        id=uuid.uuid4(),
        type="payment.created",
        source="urn:kabinet:billing",
        subject=f"customer:{customer_id}",
        time=at or NOON,
        data={
            "version": 1,
            "payment_id": 7,
            "invoice_id": 3,
            "customer_id": customer_id,
            "amount": "1250.00",
            "currency": "RUB",
            "method": "card",
            "status": "succeeded",
        },
    )


async def plan(db: Database, event: CloudEvent) -> None:
    async with db.transaction() as tx:
        await Planner(Templates()).plan(tx, event)


async def records(db: Database, user_id: int) -> list[dict[str, object]]:
    async with db.connect() as conn:
        rows = await conn.execute(
            select(notifications).where(notifications.c.user_id == user_id).order_by("id")
        )
        return [dict(row._mapping) for row in rows]


def dispatcher(
    db: Database,
    clock: ManualClock,
    metrics: PrometheusNotificationMetrics | None = None,
    batch_size: int = 100,
    **channels: RecordingChannel,
) -> Dispatcher:
    return Dispatcher(
        db,
        {ChannelKind(kind): channel for kind, channel in channels.items()},
        clock=clock,
        links=ResetLinks(KEY, RESET_URL),
        max_attempts=3,
        backoff=timedelta(seconds=10),
        batch_size=batch_size,
        metrics=metrics,
    )


async def test_a_redelivered_event_is_planned_and_sent_once(
    db: Database, kafka_bootstrap: str
) -> None:
    user_id, customer_id = await make_customer(db)
    bus = KafkaBus(kafka_bootstrap, client_id="kabinet-test", idempotent=False, partitions=2)
    await bus.start()
    topic = f"test.notify.{uuid.uuid4().hex[:8]}"
    await bus.ensure_topics([topic, topic + ".dlq"])
    event = payment_event(customer_id)
    consumer = EventConsumer(
        f"notifications-{uuid.uuid4().hex[:6]}",
        db,
        bus,
        [topic],
        Planner(Templates()).handlers(),
        dead_letter_suffix=".dlq",
        max_attempts=2,
        backoff=timedelta(milliseconds=10),
    )
    try:
        async with running(consumer) as run:
            for _ in range(3):  # the relay may publish an event more than once
                await bus.publish(topic, event.subject, event.to_json())
            await run.until(lambda: _has(db, user_id, 2))
            await run.until(lambda: _claims(db, consumer.name, event.id))
    finally:
        await bus.stop()

    rows = await records(db, user_id)
    assert [(row["medium"], row["status"]) for row in rows] == [
        (Medium.SMS, NotificationStatus.QUEUED),  # no device: push, else SMS
        (Medium.IN_APP, NotificationStatus.SENT),
    ]
    assert rows[1]["title"] == "Платёж получен"
    clock = ManualClock(NOON)
    sms = RecordingChannel("sms-a")
    send = dispatcher(db, clock, sms=sms)
    await send.dispatch_due()
    await plan(db, event)  # again, as if the claim were lost: the unique index holds
    await send.dispatch_due()
    [message] = sms.sent
    assert message.to == "+79161234567"
    assert "1250.00 RUB" in message.text
    [sent, _] = await records(db, user_id)
    assert (sent["status"], sent["provider"], sent["provider_message_id"]) == (
        NotificationStatus.SENT,
        "sms-a",
        "sms-a-1",
    )
    async with db.connect() as conn:
        received = (
            (
                await conn.execute(
                    select(OutboxEvent.payload).where(
                        OutboxEvent.type == "notification.received",
                        OutboxEvent.subject == f"user:{user_id}",
                    )
                )
            )
            .scalars()
            .all()
        )
    assert [payload["notification_id"] for payload in received] == [rows[1]["id"]]


async def _claims(db: Database, name: str, event_id: uuid.UUID) -> bool:
    async with db.connect() as conn:
        found = await conn.execute(
            select(ProcessedEvent.event_id).where(
                ProcessedEvent.consumer == name, ProcessedEvent.event_id == event_id
            )
        )
        return found.first() is not None


async def _has(db: Database, user_id: int, count: int) -> bool:
    return len(await records(db, user_id)) >= count


async def test_retries_back_off_then_the_message_is_a_dead_letter(db: Database) -> None:
    user_id, customer_id = await make_customer(db)
    await plan(db, payment_event(customer_id))
    clock = ManualClock(NOON)
    failing = RecordingChannel("sms-a", [TemporaryFailure("sms-a", "THROTTLED")] * 5)
    registry = CollectorRegistry()
    send = dispatcher(db, clock, PrometheusNotificationMetrics(registry), sms=failing)

    await send.dispatch_due()
    [sms, _] = await records(db, user_id)
    assert (sms["status"], sms["attempts"]) == (NotificationStatus.QUEUED, 1)
    assert sms["next_attempt_at"] == clock.now() + timedelta(seconds=10)
    assert await send.dispatch_due() == 0  # not due yet
    clock.advance(timedelta(seconds=10))
    await send.dispatch_due()
    [sms, _] = await records(db, user_id)
    assert sms["next_attempt_at"] == clock.now() + timedelta(seconds=20)  # doubled
    clock.advance(timedelta(seconds=20))
    await send.dispatch_due()
    [sms, _] = await records(db, user_id)
    assert (sms["status"], sms["attempts"]) == (NotificationStatus.FAILED, 3)
    assert "gave up after 3 attempts" in str(sms["last_error"])
    clock.advance(timedelta(hours=1))
    assert await send.dispatch_due() == 0
    labels = {"medium": "sms", "provider": "sms-a"}
    assert registry.get_sample_value("kabinet_notifications_retried_total", labels) == 2
    assert registry.get_sample_value("kabinet_notifications_dead_lettered_total", labels) == 1


async def test_preferences_turn_a_medium_off_but_never_security(db: Database) -> None:
    user_id, customer_id = await make_customer(db)
    await update_preferences(
        db, user_id, changes=[PreferenceChange(Category.BILLING, Medium.SMS, False)]
    )
    with pytest.raises(InvalidInput):
        await update_preferences(
            db, user_id, changes=[PreferenceChange(Category.SECURITY, Medium.EMAIL, False)]
        )
    async with db.transaction() as tx:  # as if stored before the rule: still ignored
        await tx.execute(
            insert(NotificationPreference).values(
                user_id=user_id, category=Category.SECURITY, medium=Medium.EMAIL, enabled=False
            )
        )
    await plan(db, payment_event(customer_id))
    assert [row["medium"] for row in await records(db, user_id)] == [Medium.IN_APP]
    await plan(db, reset_event(user_id))
    assert [row["medium"] for row in await records(db, user_id)][-1] == Medium.EMAIL


def reset_event(user_id: int, email: str = "someone@example.ru") -> CloudEvent:
    return CloudEvent(
        id=uuid.uuid4(),
        type="identity.password_reset_requested",
        source="urn:kabinet:identity",
        subject=f"user:{user_id}",
        time=NOON,
        data={
            "version": 2,
            "user_id": user_id,
            "email": email,
            "reset_id": str(uuid.uuid4()),
            "expires_at": "2026-12-04T20:00:00+00:00",
        },
    )


async def test_quiet_hours_hold_sms_and_push_until_morning_not_email(db: Database) -> None:
    user_id, customer_id = await make_customer(db)
    await update_preferences(
        db, user_id, time_zone="Asia/Vladivostok", quiet_hours=(time(22, 0), time(8, 0))
    )
    night = datetime(2026, 12, 4, 13, 30, tzinfo=UTC)  # 23:30 in Vladivostok (UTC+10)
    clock = ManualClock(night)
    await plan(db, payment_event(customer_id, at=night))
    await plan(db, reset_event(user_id))  # security email: not held
    sms, email = RecordingChannel("sms-a"), RecordingChannel("smtp")
    send = dispatcher(db, clock, sms=sms, email=email)
    await send.dispatch_due()
    assert sms.sent == []
    assert len(email.sent) == 1
    [held] = [row for row in await records(db, user_id) if row["medium"] == Medium.SMS]
    morning = datetime(2026, 12, 4, 22, 0, tzinfo=UTC)  # 08:00 the next day there
    assert (held["status"], held["attempts"], held["next_attempt_at"]) == (
        NotificationStatus.QUEUED,
        0,
        morning,
    )
    clock.advance(morning - night - timedelta(minutes=1))
    await send.dispatch_due()
    assert sms.sent == []
    clock.advance(timedelta(minutes=1))
    await send.dispatch_due()
    assert len(sms.sent) == 1


async def test_a_device_token_belongs_to_one_user_and_push_goes_only_there(db: Database) -> None:
    first_user, first_customer = await make_customer(db)
    second_user, _ = await make_customer(db)
    now = datetime.now(UTC)
    token = f"fcm-{uuid.uuid4().hex}"
    mine = await register_device(
        db,
        first_user,
        platform=PushPlatform.ANDROID,
        token=token,
        app_id="ru.kabinet",
        locale="en",
        now=now,
    )
    await plan(db, payment_event(first_customer))
    moved = await register_device(
        db,
        second_user,
        platform=PushPlatform.ANDROID,
        token=token,
        app_id="ru.kabinet",
        locale="ru",
        now=now,
    )
    assert moved.id == mine.id
    async with db.read() as reader:
        assert await devices_of(reader, first_user) == []
        assert [device.id for device in await devices_of(reader, second_user)] == [mine.id]
    with pytest.raises(NotFound):
        await unregister_device(db, first_user, mine.id)

    push = RecordingChannel("fcm")
    await dispatcher(db, ManualClock(NOON), push=push).dispatch_due()
    assert push.sent == []  # planned for the first user; the token is no longer theirs
    [queued, _] = await records(db, first_user)
    assert (queued["medium"], queued["status"]) == (Medium.PUSH, NotificationStatus.FAILED)


async def test_a_dead_token_is_deleted(db: Database) -> None:
    user_id, customer_id = await make_customer(db)
    await register_device(
        db,
        user_id,
        platform=PushPlatform.IOS,
        token=f"apns-{uuid.uuid4().hex}",
        app_id="ru.kabinet.app",
        locale="en",
        now=datetime.now(UTC),
    )
    await plan(db, payment_event(customer_id))
    push = RecordingChannel("apns", [RecipientGone("apns", "Unregistered")])
    await dispatcher(db, ManualClock(NOON), push=push).dispatch_due()
    async with db.read() as reader:
        assert await devices_of(reader, user_id) == []
    [gone, _] = await records(db, user_id)
    assert gone["status"] == NotificationStatus.FAILED


async def test_the_reset_email_link_resets_the_password(
    notify_url: str, signing_key: bytes, kafka_bootstrap: str
) -> None:
    settings = make_settings(notify_url, signing_key)
    app = create_app(settings)
    db = app.state.services.db
    user_id, _ = await make_customer(db)
    async with db.transaction() as tx:
        email = (
            await tx.execute(
                update(User)
                .where(User.id == user_id)
                .values(password_hash=hash_password(OLD_PASSWORD))
                .returning(User.email)
            )
        ).scalar_one()
    async for client in app_client(app):
        # Signed in on the phone, which registers for push.
        signed_in = await client.post(
            "/auth/login", json={"email": email, "password": OLD_PASSWORD}
        )
        registered = await client.post(
            "/notifications/devices",
            json={"platform": "ios", "token": "c" * 64, "app_id": "ru.kabinet.app", "locale": "ru"},
            headers={"Authorization": f"Bearer {signed_in.json()['access_token']}"},
        )
        assert registered.status_code == 201
        answer = await client.post(
            "/graphql",
            json={
                "query": "mutation($e: String!) { requestPasswordReset(email: $e) }",
                "variables": {"e": email},
            },
        )
        assert answer.json() == {"data": {"requestPasswordReset": True}}
        async with db.connect() as conn:
            row = (
                await conn.execute(
                    select(OutboxEvent.__table__).where(
                        OutboxEvent.type == "identity.password_reset_requested",
                        OutboxEvent.subject == f"user:{user_id}",
                    )
                )
            ).one()
        event = CloudEvent.from_outbox(row, app.state.services.events)
        bus = KafkaBus(kafka_bootstrap, client_id="kabinet-test", idempotent=False, partitions=2)
        await bus.start()
        topic = f"test.identity.{uuid.uuid4().hex[:8]}"
        await bus.ensure_topics([topic, topic + ".dlq"])
        consumer = EventConsumer(
            f"notifications-{uuid.uuid4().hex[:6]}",
            db,
            bus,
            [topic],
            Planner(Templates()).handlers(),
            dead_letter_suffix=".dlq",
            max_attempts=2,
            backoff=timedelta(milliseconds=10),
        )
        try:
            async with running(consumer) as run:
                await bus.publish(topic, event.subject, event.to_json())
                await run.until(lambda: _has(db, user_id, 1))
        finally:
            await bus.stop()

        async with mail_sink() as sink:
            smtp = SmtpChannel(
                host="127.0.0.1",
                port=sink.port,
                sender="Kabinet <noreply@kabinet.test>",
                clock=ManualClock(NOON),
            )
            send = Dispatcher(
                db,
                {ChannelKind.EMAIL: smtp},
                clock=ManualClock(),
                links=ResetLinks(reset_link_key(settings), settings.password_reset_url),
            )
            await send.dispatch_due()
            await smtp.aclose()
        [received] = sink.received
        assert received.rcpt_tos == [email]
        assert received.message["Subject"] == "Восстановление пароля"
        text = received.message.get_body(("plain",)).get_content()
        html = received.message.get_body(("html",)).get_content()
        link = re.search(r"https?://\S+", text).group(0)  # type: ignore[union-attr]
        assert link.startswith(settings.password_reset_url + "?token=")
        assert f'href="{link}"' in html
        token = link.split("token=", 1)[1]
        reset = await client.post(
            "/graphql",
            json={
                "query": "mutation($t: String!, $p: String!) "
                "{ resetPassword(token: $t, newPassword: $p) }",
                "variables": {"t": token, "p": "a brand new passphrase"},
            },
        )
        assert reset.json() == {"data": {"resetPassword": True}}
        login = await client.post(
            "/auth/login", json={"email": email, "password": "a brand new passphrase"}
        )
        assert login.status_code == 200
        async with db.read() as reader:
            assert await devices_of(reader, user_id) == []  # gone with the sessions


async def test_two_dispatchers_at_once_send_each_message_once(db: Database) -> None:
    users = [await make_customer(db) for _ in range(6)]
    for _, customer_id in users:
        await plan(db, payment_event(customer_id))
    first, second = RecordingChannel("sms-a"), RecordingChannel("sms-a")
    clock = ManualClock(NOON)
    one = dispatcher(db, clock, batch_size=2, sms=first)
    other = dispatcher(db, clock, batch_size=2, sms=second)
    for _ in range(3):  # rounds side by side: SKIP LOCKED and the lease keep them apart
        await asyncio.gather(one.dispatch_due(), other.dispatch_due())
    sent = [message.to for message in first.sent + second.sent]
    assert len(sent) == 6
    assert len({message.idempotency_key for message in first.sent + second.sent}) == 6
