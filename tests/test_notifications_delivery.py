"""The dispatcher through the real channels and their local servers: SMS to the sandbox
gateways with failover and the signed delivery report updating the record, Android push to
the sandbox FCM (a dead token deleted), iOS push to the sandbox APNs over TLS and HTTP/2."""

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from joserfc.jwk import ECKey, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters.apns_channel import ApnsChannel
from adapters.fcm_channel import FcmChannel, ServiceAccount
from adapters.sandbox_apns import create_sandbox_apns_app
from adapters.sandbox_fcm import create_sandbox_fcm_app
from adapters.sandbox_sms import create_sandbox_sms_app
from adapters.sms_gateway import SmsFailover, SmsGateway
from domains.clock import ManualClock
from domains.database import Database
from domains.notifications.channel import (
    ChannelKind,
    DeliveryReport,
    PushByPlatform,
    PushPlatform,
)
from domains.notifications.delivery_report import record_delivery_report
from domains.notifications.device import devices_of, register_device
from domains.notifications.dispatch import Dispatcher, ResetLinks
from domains.notifications.models import Medium, NotificationStatus
from domains.notifications.sms_report import read_report
from gateway.app import create_app
from tests.conftest import make_settings, migrated_database
from tests.http2_server import serve_http2
from tests.servers import free_socket, serve, url_of
from tests.test_notifications import (
    KEY,
    NOON,
    RESET_URL,
    make_customer,
    payment_event,
    plan,
    records,
)
from tests.tls import self_signed

pytestmark = pytest.mark.postgres

SECRET = b"sms-report-secret"


@pytest_asyncio.fixture
async def db() -> AsyncIterator[Database]:
    """A database per test: the dispatcher sends whatever is due in it."""
    async with migrated_database("kabinet_delivery") as url:
        database = Database(url)
        yield database
        await database.dispose()


def sender(db: Database, clock: ManualClock, channels: dict) -> Dispatcher:
    return Dispatcher(db, channels, clock=clock, links=ResetLinks(KEY, RESET_URL), max_attempts=3)


async def test_sms_fails_over_and_its_delivery_report_marks_it_delivered(db: Database) -> None:
    clock = ManualClock(NOON)
    reports: list[DeliveryReport] = []

    async def receive(request: Request) -> Response:  # the callback, as the webhook reads it
        report = read_report(
            provider=request.path_params["provider"],
            secret=SECRET,
            timestamp=request.headers.get("x-signature-timestamp", ""),
            signature=request.headers.get("x-signature", ""),
            body=await request.body(),
            now=clock.now(),
            tolerance=timedelta(minutes=5),
        )
        if report is not None:
            reports.append(report)
        return Response("OK")

    receiver = Starlette(routes=[Route("/webhooks/sms/{provider}", receive, methods=["POST"])])
    receiver_socket, first_socket, second_socket = free_socket(), free_socket(), free_socket()
    apps = {
        name: create_sandbox_sms_app(
            login=f"kabinet-{name}",
            password=f"{name}-pass",
            report_url=f"{url_of(receiver_socket)}/webhooks/sms/{name}",
            report_secret=SECRET,
            clock=clock,
        )
        for name in ("primary", "secondary")
    }
    apps["primary"].state.sandbox.down = True
    user_id, customer_id = await make_customer(db)
    await plan(db, payment_event(customer_id))
    with (
        serve(receiver, receiver_socket),
        serve(apps["primary"], first_socket) as first_url,
        serve(apps["secondary"], second_socket) as second_url,
    ):
        gateways = [
            SmsGateway(
                name, url, login=f"kabinet-{name}", password=f"{name}-pass", sender="Kabinet"
            )
            for name, url in (("primary", first_url), ("secondary", second_url))
        ]
        try:
            await sender(db, clock, {ChannelKind.SMS: SmsFailover(*gateways)}).dispatch_due()
        finally:
            for gateway in gateways:
                await gateway.aclose()
        [sms, _] = await records(db, user_id)
        assert (sms["status"], sms["provider"]) == (NotificationStatus.SENT, "secondary")
        [(_, message)] = apps["secondary"].state.sandbox.messages.items()
        assert "1250.00 RUB" in str(message)
        async with httpx.AsyncClient(base_url=second_url) as control:
            answer = await control.post(f"/sandbox/messages/{sms['provider_message_id']}/delivered")
        assert answer.json() == {"callback_status": 200}
    [report] = reports
    assert await record_delivery_report(db, report)
    [sms, _] = await records(db, user_id)
    assert sms["status"] == NotificationStatus.DELIVERED
    assert sms["delivered_at"] == report.at
    assert not await record_delivery_report(db, report)  # once


async def test_the_gateways_signed_callback_to_the_api_marks_the_sms_delivered(
    db: Database, signing_key: bytes
) -> None:
    """The whole way: sent through the sandbox gateway, whose operator's report the gateway
    posts, signed, as a form, to the API's `/webhooks/sms/smsc`; a forged one changes nothing."""
    clock = ManualClock()  # the API checks the signature's age on the system clock
    app_socket, gateway_socket = free_socket(), free_socket()
    sandbox = create_sandbox_sms_app(
        login="kabinet",
        password="sms-pass",
        report_url=f"{url_of(app_socket)}/webhooks/sms/smsc",
        report_secret=SECRET,
        clock=clock,
    )
    user_id, customer_id = await make_customer(db)
    await plan(db, payment_event(customer_id))
    settings = make_settings(
        str(db.engine.url.render_as_string(hide_password=False)),
        signing_key,
        worker_in_process=False,
        sms_report_secret=SECRET.decode(),
    )
    with serve(create_app(settings), app_socket) as api, serve(sandbox, gateway_socket) as url:
        gateway = SmsGateway("smsc", url, login="kabinet", password="sms-pass", sender="Kabinet")
        try:
            await sender(db, ManualClock(NOON), {ChannelKind.SMS: gateway}).dispatch_due()
        finally:
            await gateway.aclose()
        [sms, _] = await records(db, user_id)
        assert sms["status"] == NotificationStatus.SENT
        async with httpx.AsyncClient() as client:
            forged = await client.post(
                f"{api}/webhooks/sms/smsc",
                content=f"id={sms['provider_message_id']}&phone=1&status=20&time=1&err=1",
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Signature-Timestamp": "1",
                    "X-Signature": "v1=00",
                },
            )
            assert forged.status_code == 401
            unknown = await client.post(
                f"{api}/webhooks/sms/elsewhere", content=b"id=1", headers={"X-Signature": "v1=0"}
            )
            assert unknown.status_code == 404
            answer = await client.post(
                f"{url}/sandbox/messages/{sms['provider_message_id']}/delivered"
            )
        assert answer.json() == {"callback_status": 200}
    [sms, _] = await records(db, user_id)
    assert sms["status"] == NotificationStatus.DELIVERED


async def test_push_reaches_fcm_and_apns_and_a_dead_token_goes(
    db: Database, tmp_path: Path
) -> None:
    clock = ManualClock(NOON)
    rsa = RSAKey.generate_key(2048)
    fcm_socket = free_socket()
    fcm_app = create_sandbox_fcm_app(
        project_id="kabinet-test",
        client_email="push@kabinet-test.iam.gserviceaccount.com",
        key_id="k1",
        public_key_pem=rsa.as_pem(private=False).decode(),
        token_uri=f"{url_of(fcm_socket)}/token",
        clock=clock,
    )
    ec = ECKey.generate_key("P-256")
    certificate = self_signed(tmp_path)
    apns_app = create_sandbox_apns_app(
        team_id="A1B2C3D4E5",
        key_id="K9X8W7V6U5",
        public_key_pem=ec.as_pem(private=False).decode(),
        topics=frozenset({"ru.kabinet.app"}),
        clock=clock,
    )
    user_id, customer_id = await make_customer(db)
    for platform, token in ((PushPlatform.ANDROID, "fcm-live"), (PushPlatform.IOS, "b" * 64)):
        await register_device(
            db,
            user_id,
            platform=platform,
            token=token,
            app_id="ru.kabinet.app",
            locale="en",
            now=datetime.now(UTC),
        )
    await register_device(
        db,
        user_id,
        platform=PushPlatform.ANDROID,
        token="fcm-stale",
        app_id="ru.kabinet.app",
        locale="en",
        now=datetime.now(UTC),
    )
    fcm_app.state.sandbox.unregistered.add("fcm-stale")
    await plan(db, payment_event(customer_id))
    with (
        serve(fcm_app, fcm_socket) as fcm_url,
        serve_http2(apns_app, free_socket(), certificate) as apns_url,
    ):
        account = ServiceAccount.from_json(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": "kabinet-test",
                    "private_key_id": "k1",
                    "private_key": rsa.as_pem(private=True).decode(),
                    "client_email": "push@kabinet-test.iam.gserviceaccount.com",
                    "token_uri": f"{fcm_url}/token",
                }
            )
        )
        fcm = FcmChannel(account, clock=clock, base_url=fcm_url)
        apns = ApnsChannel(
            key_pem=ec.as_pem(private=True).decode(),
            key_id="K9X8W7V6U5",
            team_id="A1B2C3D4E5",
            topic="ru.kabinet.app",
            clock=clock,
            base_url=apns_url,
            tls_context=certificate.client_context(),
        )
        try:
            push = PushByPlatform(android=fcm, ios=apns)
            await sender(db, clock, {ChannelKind.PUSH: push}).dispatch_due()
        finally:
            await fcm.aclose()
            await apns.aclose()
    pushes = [row for row in await records(db, user_id) if row["medium"] == Medium.PUSH]
    assert [row["status"] for row in pushes] == [
        NotificationStatus.SENT,
        NotificationStatus.SENT,
        NotificationStatus.FAILED,
    ]
    [android] = fcm_app.state.sandbox.received
    assert "fcm-live" in json.dumps(android)
    assert "Payment received" in json.dumps(android, ensure_ascii=False)
    [ios] = apns_app.state.sandbox.received
    assert ios.device == "b" * 64
    assert ios.payload["aps"]["alert"]["title"] == "Payment received"
    async with db.read() as reader:
        left = await devices_of(reader, user_id)
    # FCM said UNREGISTERED: that token is deleted, the others stay.
    assert sorted(device.platform for device in left) == [PushPlatform.ANDROID, PushPlatform.IOS]
