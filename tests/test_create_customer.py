"""createCustomer: staff open an account with its user; the invitation email, sent by SMTP
to a real server, carries the link that sets the first password, and the customer signs in.
Refusals leave nothing written, on SQLite and PostgreSQL."""

import functools
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from sqlalchemy import func, select

from adapters.kafka_bus import KafkaBus
from adapters.smtp_channel import SmtpChannel
from domains.clock import ManualClock
from domains.customers.errors import ContractNumTaken, EmailTaken
from domains.customers.provisioning import create_customer
from domains.database import Database
from domains.errors import Forbidden, InvalidInput
from domains.events.cloudevent import CloudEvent
from domains.events.consumer import EventConsumer
from domains.identity.invitation import INVITATION_CREATED
from domains.identity.models import PasswordReset, Role, User
from domains.identity.password_reset import reset_link_token, reset_password
from domains.identity.viewer import Viewer
from domains.models import metadata
from domains.notifications.channel import ChannelKind
from domains.notifications.dispatch import Dispatcher, ResetLinks
from domains.notifications.models import Notification
from domains.notifications.plan import Planner
from domains.notifications.templates import Templates
from domains.outbox import OutboxEvent
from gateway.app import create_app
from gateway.services import reset_link_key
from tests.conftest import (
    app_client,
    graphql,
    load_demo_into,
    login,
    make_settings,
    migrated_database,
)
from tests.mail_sink import mail_sink
from tests.test_consumer import running

NOON = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
ADMIN = Viewer(1, Role.ADMIN)
CREATE = (
    "mutation($e: String!, $n: String!, $c: String!, $p: String) {"
    " createCustomer(email: $e, fullName: $n, contractNum: $c, phone: $p)"
    " { id contractNum fullName phone user { email role } } }"
)
WRITTEN = ("users", "customers", "password_resets", "outbox")


@pytest_asyncio.fixture
async def auth_on(db_url: str, signing_key: bytes) -> AsyncIterator:
    clock = ManualClock(NOON)
    app = create_app(make_settings(db_url, signing_key), clock=clock)
    yield app.state.services.auth, clock
    await app.state.services.aclose()


async def _counts(db: Database) -> dict[str, int]:
    async with db.connect() as conn:
        return {
            name: (
                await conn.execute(select(func.count()).select_from(metadata.tables[name]))
            ).scalar_one()
            for name in WRITTEN
        }


async def _invitation(db: Database, user_id: int) -> dict:
    async with db.connect() as conn:
        row = (
            await conn.execute(
                select(OutboxEvent.__table__).where(
                    OutboxEvent.type == INVITATION_CREATED, OutboxEvent.subject == f"user:{user_id}"
                )
            )
        ).one()
    return row._mapping["payload"]


async def test_the_invitation_link_sets_the_first_password_for_seven_days(auth_on) -> None:
    auth, clock = auth_on
    made = await create_customer(
        auth,
        ADMIN,
        email="  New.Customer@Example.RU ",
        full_name=" Пётр   Новиков ",
        contract_num="K-900001",
        phone="+7 (916) 123-45-67",
    )
    assert (made.full_name, made.phone, made.balance) == ("Пётр Новиков", "+79161234567", 0)
    async with auth.db.connect() as conn:
        user = (await conn.execute(select(User).where(User.id == made.user_id))).one()
        [link] = (
            await conn.execute(select(PasswordReset).where(PasswordReset.user_id == made.user_id))
        ).all()
    assert (user.email, user.role, user.is_active) == (
        "new.customer@example.ru",
        Role.CUSTOMER,
        True,
    )
    assert user.password_hash.startswith("$argon2id$")
    assert link.expires_at == NOON + timedelta(days=7)
    data = await _invitation(auth.db, made.user_id)
    assert (data["email"], data["full_name"]) == ("new.customer@example.ru", "Пётр Новиков")
    token = reset_link_token(auth.reset_link_key, uuid.UUID(data["reset_id"]))
    clock.advance(timedelta(days=6, hours=23))  # far past a reset link's half hour
    await reset_password(auth, token=token, new_password="my first passphrase")
    with pytest.raises(InvalidInput):  # single use
        await reset_password(auth, token=token, new_password="another passphrase")


async def test_an_invitation_expires_after_its_days(auth_on) -> None:
    auth, clock = auth_on
    made = await create_customer(
        auth, ADMIN, email="late@example.ru", full_name="Опоздавший", contract_num="K-2"
    )
    data = await _invitation(auth.db, made.user_id)
    token = reset_link_token(auth.reset_link_key, uuid.UUID(data["reset_id"]))
    clock.advance(timedelta(days=7, seconds=1))
    with pytest.raises(InvalidInput):
        await reset_password(auth, token=token, new_password="my first passphrase")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "not-an-email"),
        ("email", "a b@example.ru"),
        ("full_name", "   "),
        ("phone", "12345"),
        ("contract_num", ""),
        ("contract_num", "K 1"),
    ],
)
async def test_bad_input_writes_nothing(auth_on, field: str, value: str) -> None:
    auth, _ = auth_on
    given = {"email": "ok@example.ru", "full_name": "Имя", "contract_num": "K-1", "phone": None}
    before = await _counts(auth.db)
    with pytest.raises(InvalidInput):
        await create_customer(auth, ADMIN, **{**given, field: value})
    assert await _counts(auth.db) == before


async def test_taken_email_or_number_and_operators_write_nothing(auth_on) -> None:
    auth, _ = auth_on
    await create_customer(
        auth, ADMIN, email="first@example.ru", full_name="Первый", contract_num="K-1"
    )
    before = await _counts(auth.db)
    with pytest.raises(EmailTaken):
        await create_customer(
            auth, ADMIN, email="FIRST@example.ru", full_name="Второй", contract_num="K-2"
        )
    with pytest.raises(ContractNumTaken):  # the user it had inserted rolls back with it
        await create_customer(
            auth, ADMIN, email="second@example.ru", full_name="Второй", contract_num="K-1"
        )
    with pytest.raises(Forbidden):
        await create_customer(
            auth,
            Viewer(2, Role.OPERATOR),
            email="third@example.ru",
            full_name="Третий",
            contract_num="K-3",
        )
    assert await _counts(auth.db) == before


@pytest.mark.postgres
async def test_staff_create_a_customer_who_signs_in_through_the_invitation(
    signing_key: bytes, kafka_bootstrap: str
) -> None:
    async with migrated_database("kabinet_prov") as url:
        await load_demo_into(url)
        settings = make_settings(url, signing_key)
        app = create_app(settings)
        db = app.state.services.db
        async for client in app_client(app):
            operator = await login(client, "operator@example.com")
            variables = {"e": "Invited@Example.ru", "n": "Анна Смирнова", "c": "K-777001"}
            refused = await graphql(client, CREATE, variables, token=operator)
            assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
            admin = await login(client, "admin@example.com")
            body = await graphql(client, CREATE, {**variables, "p": "+7 495 123-45-67"}, admin)
            made = body["data"]["createCustomer"]  # type: ignore[index]
            assert made["user"] == {"email": "invited@example.ru", "role": "CUSTOMER"}
            assert (made["contractNum"], made["phone"]) == ("K-777001", "+74951234567")
            again = await graphql(client, CREATE, {**variables, "c": "K-777002"}, admin)
            assert again["errors"][0]["extensions"]["code"] == "EMAIL_TAKEN"  # type: ignore[index]

            async with db.connect() as conn:
                row = (
                    await conn.execute(
                        select(OutboxEvent.__table__).where(OutboxEvent.type == INVITATION_CREATED)
                    )
                ).one()
            event = CloudEvent.from_outbox(row, app.state.services.events)
            invited = int(event.subject.split(":")[1])
            bus = KafkaBus(
                kafka_bootstrap, client_id="kabinet-test", idempotent=False, partitions=2
            )
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
                    await run.until(functools.partial(_planned, db, invited))
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
            assert received.rcpt_tos == ["invited@example.ru"]
            assert received.message["Subject"] == "Ваш личный кабинет"
            text = received.message.get_body(("plain",)).get_content()
            assert "Анна Смирнова" in text
            link = re.search(r"https?://\S+", text).group(0)  # type: ignore[union-attr]
            assert link.startswith(settings.password_reset_url + "?token=")
            token = link.split("token=", 1)[1]
            # Before the password is set, no password signs in.
            refused_login = await client.post(
                "/auth/login", json={"email": "invited@example.ru", "password": "kabinet-demo"}
            )
            assert refused_login.status_code == 401
            reset = await graphql(
                client,
                "mutation($t: String!, $p: String!) { resetPassword(token: $t, newPassword: $p) }",
                {"t": token, "p": "my very own passphrase"},
            )
            assert reset == {"data": {"resetPassword": True}}
            signed_in = await login(client, "invited@example.ru", "my very own passphrase")
            mine = await graphql(client, "{ me { customer { contractNum } } }", token=signed_in)
            assert mine == {"data": {"me": {"customer": {"contractNum": "K-777001"}}}}


async def _planned(db: Database, user_id: int) -> bool:
    async with db.connect() as conn:
        found = await conn.execute(
            select(func.count())
            .select_from(Notification.__table__)
            .where(Notification.__table__.c.user_id == user_id)
        )
        return found.scalar_one() >= 1
