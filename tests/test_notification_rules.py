"""The rows beyond payments: support's tickets and replies, dunning's reminders and
suspensions, tariff changes and pauses. Support's own actions write the events, the
Kafka-wire broker carries them to the notification consumer, and the dispatcher sends
through the sandbox FCM, a real SMTP server (aiosmtpd) and the sandbox SMS gateway; an
internal note, a customer's own message and a ticket not resolved send nothing."""

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio
from joserfc.jwk import RSAKey
from sqlalchemy import insert, select

from adapters.fcm_channel import FcmChannel, ServiceAccount
from adapters.kafka_bus import KafkaBus
from adapters.sandbox_fcm import create_sandbox_fcm_app
from adapters.sandbox_sms import create_sandbox_sms_app
from adapters.sms_gateway import SmsGateway
from adapters.smtp_channel import SmtpChannel
from domains.clock import ManualClock
from domains.customers.models import Contract, Segment, Subscription, SubscriptionStatus, Tariff
from domains.database import Database
from domains.events.cloudevent import CloudEvent
from domains.events.consumer import EventConsumer
from domains.identity.models import User
from domains.identity.viewer import Viewer
from domains.notifications.channel import ChannelKind, PushByPlatform, PushPlatform
from domains.notifications.device import register_device
from domains.notifications.dispatch import Dispatcher, ResetLinks
from domains.notifications.models import Category, Medium, Notification, NotificationStatus
from domains.notifications.plan import Planner
from domains.notifications.preferences import PreferenceChange, update_preferences
from domains.notifications.rules import RULES, AtLeast, Equals
from domains.notifications.templates import Templates
from domains.outbox import OutboxEvent
from domains.support.models import TicketCategory, TicketChannel, TicketStatus
from domains.support.ticket_create import create_ticket
from domains.support.ticket_message import add_internal_note, add_ticket_message
from domains.support.ticket_status import set_ticket_status
from tests.conftest import catalog_of, migrated_database
from tests.mail_sink import mail_sink
from tests.servers import free_socket, serve, url_of
from tests.support_fixtures import add_customer, add_staff
from tests.test_consumer import running
from tests.test_notifications import KEY, NOON, RESET_URL, _claims, make_customer, plan, records

pytestmark = pytest.mark.postgres

SUBJECT = "Нет интернета с утра"
REOPEN = timedelta(days=7)


@pytest_asyncio.fixture
async def db() -> AsyncIterator[Database]:
    async with migrated_database("kabinet_notify_rules") as url:
        database = Database(url)
        yield database
        await database.dispose()


def test_conditions_hold_only_on_the_value_and_its_type() -> None:
    assert Equals("internal", False).holds({"internal": False})
    assert not Equals("internal", False).holds({"internal": 0})
    assert not Equals("internal", False).holds({})  # a missing field: no
    assert Equals("reason", None).holds({})
    assert not Equals("reason", None).holds({"reason": "pause"})
    assert AtLeast("offset_days", 0).holds({"offset_days": 0})
    assert not AtLeast("offset_days", 0).holds({"offset_days": -3})
    assert not AtLeast("offset_days", 0).holds({"offset_days": "5"})
    reply = RULES["ticket.message_added"]
    assert reply.applies({"author_kind": "operator", "internal": False})
    assert not reply.applies({"author_kind": "operator", "internal": True})
    assert not reply.applies({"author_kind": "customer", "internal": False})
    assert not reply.applies({"author_kind": "system", "internal": False})


async def user_of(db: Database, viewer: Viewer) -> tuple[int, str]:
    async with db.connect() as conn:
        email = (
            await conn.execute(select(User.email).where(User.id == viewer.user_id))
        ).scalar_one()
    return viewer.user_id, email


async def events_of_customer(db: Database, customer_id: int) -> list[CloudEvent]:
    catalog = catalog_of({"billing": "b", "customers": "c", "support": "s"})
    async with db.connect() as conn:
        rows = await conn.execute(
            select(OutboxEvent.__table__)
            .where(OutboxEvent.subject == f"customer:{customer_id}")
            .order_by(OutboxEvent.occurred_at, OutboxEvent.id)
        )
        return [CloudEvent.from_outbox(row, catalog) for row in rows]


async def through_the_broker(db: Database, kafka_bootstrap: str, events: list[CloudEvent]) -> None:
    """Publishes the events on a topic of their own and waits until the notification
    consumer has claimed every one."""
    bus = KafkaBus(kafka_bootstrap, client_id="kabinet-test", idempotent=False, partitions=2)
    await bus.start()
    topic = f"test.notify-rules.{uuid.uuid4().hex[:8]}"
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
    handled = [event for event in events if event.type in RULES]
    try:
        async with running(consumer) as run:
            for event in events:
                await bus.publish(topic, event.subject, event.to_json())
            for event in handled:
                await run.until(lambda event=event: _claims(db, consumer.name, event.id))
    finally:
        await bus.stop()


def sender(
    db: Database, channels: dict[ChannelKind, Any], clock: ManualClock | None = None
) -> Dispatcher:
    """A dispatcher on the wall clock (support's actions stamp their events with it), or on
    the test's."""
    return Dispatcher(
        db, channels, clock=clock or ManualClock(), links=ResetLinks(KEY, RESET_URL), max_attempts=3
    )


async def a_customer(db: Database) -> tuple[Viewer, int, int, str]:
    """A customer of the support fixtures (a contract, no phone) with no quiet hours, since
    support's actions run on the wall clock, which may be at night in Moscow: (viewer,
    customer id, user id, email)."""
    customer, _ = await add_customer(db)
    assert customer.customer_id is not None
    user_id, email = await user_of(db, customer)
    await update_preferences(db, user_id, quiet_hours=None)
    return customer, customer.customer_id, user_id, email


@asynccontextmanager
async def sandbox_fcm() -> AsyncIterator[tuple[Any, FcmChannel]]:
    """The sandbox FCM server and a channel signed in to it: (its state, the channel)."""
    clock = ManualClock(NOON)
    rsa = RSAKey.generate_key(2048)
    fcm_socket = free_socket()
    app = create_sandbox_fcm_app(
        project_id="kabinet-test",
        client_email="push@kabinet-test.iam.gserviceaccount.com",
        key_id="k1",
        public_key_pem=rsa.as_pem(private=False).decode(),
        token_uri=f"{url_of(fcm_socket)}/token",
        clock=clock,
    )
    with serve(app, fcm_socket) as url:
        account = ServiceAccount.from_json(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": "kabinet-test",
                    "private_key_id": "k1",
                    "private_key": rsa.as_pem(private=True).decode(),
                    "client_email": "push@kabinet-test.iam.gserviceaccount.com",
                    "token_uri": f"{url}/token",
                }
            )
        )
        fcm = FcmChannel(account, clock=clock, base_url=url)
        try:
            yield app.state.sandbox, fcm
        finally:
            await fcm.aclose()


def made(rows: list[dict[str, Any]]) -> list[tuple[str, Medium]]:
    return [(str(row["event_type"]), Medium(row["medium"])) for row in rows]


async def test_an_operator_reply_reaches_the_inbox_and_the_phone_and_a_note_nothing(
    db: Database, kafka_bootstrap: str
) -> None:
    customer, customer_id, user_id, _ = await a_customer(db)
    staff = await add_staff(db)
    await register_device(
        db,
        user_id,
        platform=PushPlatform.ANDROID,
        token="fcm-phone",
        app_id="ru.kabinet.app",
        locale="en",
        now=datetime.now(UTC),
    )
    created = await create_ticket(
        db,
        customer,
        category=TicketCategory.NO_CONNECTION,
        subject=SUBJECT,
        body="Роутер мигает красным",
        channel=TicketChannel.MOBILE,
    )
    ticket_id = created.ticket.id
    await add_internal_note(db, staff, ticket_id=ticket_id, body="Авария на узле, не говорить")
    await add_ticket_message(
        db, staff, ticket_id=ticket_id, body="Мы уже чиним линию", reopen_within=REOPEN
    )
    await add_ticket_message(
        db, customer, ticket_id=ticket_id, body="Спасибо, жду", reopen_within=REOPEN
    )
    events = await events_of_customer(db, customer_id)
    notes = [e for e in events if e.type == "ticket.message_added" and e.data["internal"]]
    assert len(notes) == 1
    await through_the_broker(db, kafka_bootstrap, events)

    rows = await records(db, user_id)
    # One reply told (push to the one device, and the inbox); the note and the customer's
    # own message made no row at all, for anyone.
    assert sorted(made(rows)) == sorted(
        [
            ("ticket.created", Medium.PUSH),
            ("ticket.created", Medium.IN_APP),
            ("ticket.message_added", Medium.PUSH),
            ("ticket.message_added", Medium.IN_APP),
        ]
    )
    assert await _rows_of_event(db, notes[0].id) == 0
    [reply_inbox] = [
        r for r in rows if r["event_type"] == "ticket.message_added" and r["medium"] == "in_app"
    ]
    assert reply_inbox["status"] == NotificationStatus.SENT
    assert reply_inbox["title"] == f"Ответ по обращению №{ticket_id}"  # the account's locale
    assert SUBJECT in str(reply_inbox["body"])
    assert "чиним" not in str(reply_inbox["body"])  # the reply itself stays in the thread

    async with sandbox_fcm() as (fcm_sandbox, fcm):
        push = PushByPlatform(android=fcm, ios=None)
        await sender(db, {ChannelKind.PUSH: push}).dispatch_due()
    pushes = [json.dumps(sent, ensure_ascii=False) for sent in fcm_sandbox.received]
    assert len(pushes) == 2
    [reply_push] = [p for p in pushes if "ticket.message_added" in p]
    assert "fcm-phone" in reply_push
    assert f"Reply to request #{ticket_id}" in reply_push  # the device's locale
    assert SUBJECT in reply_push
    assert f'"ticket_id": "{ticket_id}"' in reply_push  # the app opens the thread
    assert "Авария" not in "".join(pushes)
    sent = [r for r in await records(db, user_id) if r["medium"] == "push"]
    assert {r["status"] for r in sent} == {NotificationStatus.SENT}


async def _rows_of_event(db: Database, event_id: uuid.UUID) -> int:
    async with db.connect() as conn:
        found = await conn.execute(select(Notification.id).where(Notification.event_id == event_id))
        return len(found.all())


async def test_a_ticket_without_a_device_is_told_by_email_and_its_resolution_too(
    db: Database, kafka_bootstrap: str
) -> None:
    customer, customer_id, user_id, email = await a_customer(db)
    staff = await add_staff(db)
    created = await create_ticket(
        db,
        customer,
        category=TicketCategory.BILLING,
        subject=SUBJECT,
        body="Списали дважды",
        channel=TicketChannel.WEB,
    )
    ticket_id = created.ticket.id
    await set_ticket_status(db, staff, ticket_id=ticket_id, status=TicketStatus.PENDING_CUSTOMER)
    await set_ticket_status(db, staff, ticket_id=ticket_id, status=TicketStatus.RESOLVED)
    await through_the_broker(db, kafka_bootstrap, await events_of_customer(db, customer_id))
    assert sorted(made(await records(db, user_id))) == sorted(
        [
            ("ticket.created", Medium.EMAIL),  # no device: push, else email
            ("ticket.created", Medium.IN_APP),
            ("ticket.status_changed", Medium.IN_APP),  # resolved; pending told nothing
            ("ticket.status_changed", Medium.EMAIL),
        ]
    )
    async with mail_sink() as sink:
        smtp = SmtpChannel(
            host="127.0.0.1",
            port=sink.port,
            sender="Kabinet <noreply@kabinet.test>",
            clock=ManualClock(NOON),
        )
        try:
            await sender(db, {ChannelKind.EMAIL: smtp}).dispatch_due()
        finally:
            await smtp.aclose()
    assert [received.rcpt_tos for received in sink.received] == [[email], [email]]
    subjects = sorted(str(received.message["Subject"]) for received in sink.received)
    assert subjects == [f"Обращение №{ticket_id} принято", f"Обращение №{ticket_id} решено"]
    for received in sink.received:
        assert SUBJECT in received.message.get_body(("plain",)).get_content()
        assert SUBJECT in received.message.get_body(("html",)).get_content()
    emails = [r for r in await records(db, user_id) if r["medium"] == "email"]
    assert {r["status"] for r in emails} == {NotificationStatus.SENT}


async def test_support_turned_off_is_respected_and_billing_still_told(db: Database) -> None:
    customer, customer_id, user_id, _ = await a_customer(db)
    await update_preferences(
        db,
        user_id,
        changes=[
            PreferenceChange(Category.SUPPORT, medium, False)
            for medium in (Medium.PUSH, Medium.EMAIL, Medium.IN_APP)
        ],
    )
    await create_ticket(
        db,
        customer,
        category=TicketCategory.OTHER,
        subject=SUBJECT,
        body="Вопрос",
        channel=TicketChannel.WEB,
    )
    for event in await events_of_customer(db, customer_id):
        if event.type in RULES:
            await plan(db, event)
    assert await records(db, user_id) == []
    await plan(db, reminder(customer_id, offset_days=-3))
    assert made(await records(db, user_id)) == [("invoice.payment_reminder", Medium.EMAIL)]


def reminder(customer_id: int, *, offset_days: int) -> CloudEvent:
    return CloudEvent(
        id=uuid.uuid4(),
        type="invoice.payment_reminder",
        source="urn:kabinet:billing",
        subject=f"customer:{customer_id}",
        time=NOON,
        data={
            "version": 1,
            "invoice_id": 11,
            "customer_id": customer_id,
            "number": "2026-11-42",
            "amount_due": "780.00",
            "currency": "RUB",
            "due_date": "2026-12-04",
            "offset_days": offset_days,
        },
    )


async def test_a_reminder_on_the_due_day_is_an_sms_and_before_it_only_email(
    db: Database,
) -> None:
    user_id, customer_id = await make_customer(db)  # with a phone
    await plan(db, reminder(customer_id, offset_days=-3))
    await plan(db, reminder(customer_id, offset_days=0))
    assert made(await records(db, user_id)) == [
        ("invoice.payment_reminder", Medium.EMAIL),
        ("invoice.payment_reminder", Medium.EMAIL),
        ("invoice.payment_reminder", Medium.SMS),
    ]
    clock = ManualClock(NOON)
    gateway_socket = free_socket()
    sandbox = create_sandbox_sms_app(
        login="kabinet",
        password="sms-pass",
        report_url=f"{url_of(gateway_socket)}/nowhere",
        report_secret=b"unused",
        clock=clock,
    )
    with serve(sandbox, gateway_socket) as url:
        gateway = SmsGateway("smsc", url, login="kabinet", password="sms-pass", sender="Kabinet")
        try:
            await sender(db, {ChannelKind.SMS: gateway}, clock).dispatch_due()
        finally:
            await gateway.aclose()
    [(_, message)] = sandbox.state.sandbox.messages.items()
    assert "сегодня срок оплаты" in str(message)
    assert "780.00 RUB" in str(message)
    [sms] = [r for r in await records(db, user_id) if r["medium"] == "sms"]
    assert (sms["status"], sms["provider"]) == (NotificationStatus.SENT, "smsc")


def service_event(type: str, customer_id: int, **data: Any) -> CloudEvent:
    return CloudEvent(
        id=uuid.uuid4(),
        type=type,
        source="urn:kabinet:billing",
        subject=f"customer:{customer_id}",
        time=NOON,
        data={"version": 1, "customer_id": customer_id, **data},
    )


async def test_suspension_resumption_pause_and_tariff_change_name_the_service(
    db: Database,
) -> None:
    _, customer_id, user_id, _ = await a_customer(db)
    async with db.transaction() as tx:
        contract_id, tariff_id = (
            await tx.execute(
                select(Contract.id, Contract.tariff_id).where(Contract.customer_id == customer_id)
            )
        ).one()
        faster = (
            await tx.execute(
                insert(Tariff)
                .values(
                    code=f"fast-{uuid.uuid4().hex[:8]}",
                    name="Быстрый 500",
                    segment=Segment.HOME,
                    monthly_price=Decimal("900.00"),
                    download_mbps=500,
                    upload_mbps=500,
                )
                .returning(Tariff.id)
            )
        ).scalar_one()
        subscription_id = (
            await tx.execute(
                insert(Subscription)
                .values(
                    customer_id=customer_id,
                    contract_id=contract_id,
                    tariff_id=tariff_id,
                    status=SubscriptionStatus.ACTIVE,
                    started_at=NOON - timedelta(days=90),
                )
                .returning(Subscription.id)
            )
        ).scalar_one()
    on = {"subscription_id": subscription_id}
    events = [
        service_event("subscription.suspended", customer_id, **on, reason="debt"),
        service_event("subscription.resumed", customer_id, **on),
        service_event(
            "subscription.paused",
            customer_id,
            **on,
            pause_id=1,
            first_day="2026-12-10",
            until="2026-12-24",
        ),
        # A pause's end is the customers domain's event of the same type: not told.
        service_event(
            "subscription.resumed",
            customer_id,
            **on,
            reason="pause",
            pause_id=1,
            resumed_on="2026-12-24",
        ),
        service_event(
            "tariff.changed",
            customer_id,
            **on,
            from_tariff_id=tariff_id,
            to_tariff_id=faster,
            effective_from="2027-01-01",
            scheduled=True,
        ),
    ]
    for event in events:
        await plan(db, event)
    rows = await records(db, user_id)
    # The support fixtures' customer has no phone: the SMS of each is skipped, not failed.
    assert made(rows) == [
        ("subscription.suspended", Medium.EMAIL),
        ("subscription.suspended", Medium.IN_APP),
        ("subscription.resumed", Medium.EMAIL),
        ("subscription.resumed", Medium.IN_APP),
        ("subscription.paused", Medium.EMAIL),
        ("subscription.paused", Medium.IN_APP),
        ("tariff.changed", Medium.EMAIL),
        ("tariff.changed", Medium.IN_APP),
    ]
    inbox = {row["event_type"]: row for row in rows if row["medium"] == "in_app"}
    assert inbox["subscription.suspended"]["title"] == "Услуга приостановлена"
    assert "«Test», 1 Test Street" in str(inbox["subscription.suspended"]["body"])
    assert inbox["tariff.changed"]["title"] == "Смена тарифа с 2027-01-01"
    assert "«Test» → «Быстрый 500»" in str(inbox["tariff.changed"]["body"])
    [email] = [r for r in rows if r["event_type"] == "tariff.changed" and r["medium"] == "email"]
    assert email["data"]["to_tariff"] == "Быстрый 500"  # looked up once, sent as planned
