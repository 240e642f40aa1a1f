"""The notification API: push devices over REST and GraphQL (one owner per token, gone with
logoutEverywhere), preferences, the inbox, and the live `notificationReceived` stream fed
end to end (payInvoice, the outbox, the in-process relay, the notification consumer, its
`notification.received`, the hub, a real websocket)."""

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
from sqlalchemy import func, select
from websockets.asyncio.client import ClientConnection

from domains.database import Database
from domains.notifications.models import Medium, Notification, NotificationStatus
from gateway.app import create_app
from tests.conftest import app_client, graphql, login, make_settings
from tests.test_subscriptions import (
    _overdue_invoice,
    _pay,
    _serving,
    _subscribed,
    _token,
    _wait_subscribers,
)


@pytest_asyncio.fixture
async def client(sqlite_demo_copy: str, signing_key: bytes) -> AsyncIterator[httpx.AsyncClient]:
    """On a private copy of the demo: these tests change it."""
    async for http in app_client(create_app(make_settings(sqlite_demo_copy, signing_key))):
        yield http


DEVICES = "{ myDevices { id platform appId locale } }"
REGISTER = """mutation($token: String!) {
  registerPushDevice(platform: IOS, token: $token, appId: "ru.kabinet.app", locale: "en") { id }
}"""
RECEIVED = """subscription {
  notificationReceived { eventId notification { id title body category readAt } }
}"""


async def test_a_token_has_one_owner_and_others_cannot_remove_it(client: httpx.AsyncClient) -> None:
    alice, bob = await login(client, "alice@example.com"), await login(client, "bob@example.com")
    registered = await client.post(
        "/notifications/devices",
        json={"platform": "android", "token": "fcm-shared", "app_id": "ru.kabinet", "locale": "ru"},
        headers={"Authorization": f"Bearer {alice}"},
    )
    assert registered.status_code == 201, registered.text
    device = registered.json()
    assert (device["platform"], device["app_id"]) == ("android", "ru.kabinet")
    assert "token" not in device
    mine = await graphql(client, DEVICES, token=alice)
    assert [d["id"] for d in mine["data"]["myDevices"]] == [device["id"]]
    assert "token" not in json.dumps(mine)

    refused = await client.delete(
        f"/notifications/devices/{device['id']}",
        headers={"Authorization": f"Bearer {bob}", "Content-Type": "application/json"},
    )
    assert refused.status_code == 404
    moved = await graphql(client, REGISTER, {"token": "fcm-shared"}, token=bob)
    assert moved["data"]["registerPushDevice"]["id"] == device["id"]
    assert (await graphql(client, DEVICES, token=alice))["data"]["myDevices"] == []
    gone = await client.delete(
        f"/notifications/devices/{device['id']}",
        headers={"Authorization": f"Bearer {bob}", "Content-Type": "application/json"},
    )
    assert gone.status_code == 204
    assert (await graphql(client, DEVICES, token=bob))["data"]["myDevices"] == []


async def test_logout_everywhere_forgets_the_devices(client: httpx.AsyncClient) -> None:
    alice = await login(client, "alice@example.com")
    await graphql(client, REGISTER, {"token": "apns-alice"}, token=alice)
    assert await graphql(client, "mutation { logoutEverywhere }", token=alice)
    alice = await login(client, "alice@example.com")
    assert (await graphql(client, DEVICES, token=alice))["data"]["myDevices"] == []


async def test_preferences_are_the_viewers_and_security_stays_on(client: httpx.AsyncClient) -> None:
    alice = await login(client, "alice@example.com")
    update = """mutation {
      updateNotificationPreferences(
        preferences: [{category: BILLING, medium: SMS, enabled: false}],
        timeZone: "Asia/Yekaterinburg", locale: "en",
        quietHours: {start: "23:00:00", end: "07:30:00"}
      ) { locale timeZone quietHoursStart quietHoursEnd channels { category medium enabled } }
    }"""
    body = (await graphql(client, update, token=alice))["data"]["updateNotificationPreferences"]
    assert (body["locale"], body["timeZone"]) == ("en", "Asia/Yekaterinburg")
    assert (body["quietHoursStart"], body["quietHoursEnd"]) == ("23:00:00", "07:30:00")
    off = {(c["category"], c["medium"]) for c in body["channels"] if not c["enabled"]}
    assert off == {("BILLING", "SMS")}
    bob = await login(client, "bob@example.com")
    theirs = await graphql(client, "{ notificationPreferences { timeZone } }", token=bob)
    assert theirs["data"]["notificationPreferences"]["timeZone"] == "Europe/Moscow"
    security = """mutation {
      updateNotificationPreferences(preferences: [{category: SECURITY, medium: EMAIL,
        enabled: false}]) { locale }
    }"""
    refused = await graphql(client, security, token=alice)
    assert refused["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    zone = 'mutation { updateNotificationPreferences(timeZone: "Mars/Olympus") { locale } }'
    assert (await graphql(client, zone, token=alice))["errors"][0]["extensions"][
        "code"
    ] == "BAD_USER_INPUT"


async def test_staff_preview_a_template_with_sample_data(client: httpx.AsyncClient) -> None:
    operator = await login(client, "operator@example.com")
    preview = """query($data: JSON!) {
      notificationPreview(eventType: "invoice.issued", medium: EMAIL, locale: "en", data: $data)
      { subject text html }
    }"""
    data = {
        "number": "<b>2026-11-7</b>",
        "amount": "1250.00",
        "currency": "RUB",
        "period_start": "2026-11-01",
        "period_end": "2026-11-30",
        "due_date": "2026-12-10",
    }
    body = (await graphql(client, preview, {"data": data}, token=operator))["data"]
    shown = body["notificationPreview"]
    assert shown["subject"] == "Invoice <b>2026-11-7</b> for 1250.00 RUB"
    assert "&lt;b&gt;2026-11-7&lt;/b&gt;" in shown["html"]  # autoescaped in HTML only
    assert "<b>1250.00 RUB</b>" in shown["html"]
    sms = """{ notificationPreview(eventType: "identity.password_reset_requested", medium: SMS,
      locale: "ru", data: {}) { text } }"""
    refused = await graphql(client, sms, token=operator)
    assert refused["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    missing = """{ notificationPreview(eventType: "invoice.overdue", medium: SMS,
      locale: "ru", data: {number: "1"}) { text } }"""
    refused = await graphql(client, missing, token=operator)
    assert refused["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_payment_reaches_the_inbox_and_its_live_stream(
    sqlite_demo_copy: str, signing_key: bytes
) -> None:
    # The in-process worker: relay, the notification consumer, the hub's feed.
    with _serving(make_settings(sqlite_demo_copy, signing_key)) as (base, app, _):
        alice = await _token(base, "alice@example.com")
        invoice = await _overdue_invoice(base, alice)
        async with httpx.AsyncClient(base_url=base) as client:
            # Whatever the hour the test runs at, the SMS is not held for the morning.
            quiet = "mutation { updateNotificationPreferences(quietHoursOff: true) { locale } }"
            assert "errors" not in await graphql(client, quiet, token=alice)
        async for ws in _subscribed(base, alice, RECEIVED):
            await _wait_subscribers(app, 1)
            await _pay(base, alice, invoice)
            message = json.loads(await _recv(ws))
            assert message["type"] == "next", message
            entry = message["payload"]["data"]["notificationReceived"]["notification"]
            assert entry["title"] == "Платёж получен"
            assert "1.00 " in entry["body"]
            assert entry["category"] == "BILLING"
        async with httpx.AsyncClient(base_url=base) as client:
            inbox = await graphql(
                client,
                "{ unreadNotificationCount myNotifications(first: 5)"
                " { edges { node { id title readAt } } } }",
                token=alice,
            )
            [edge] = inbox["data"]["myNotifications"]["edges"]
            assert edge["node"]["id"] == entry["id"]
            assert inbox["data"]["unreadNotificationCount"] == 1
            marked = await graphql(
                client,
                "mutation($ids: [ID!]) { markNotificationsRead(ids: $ids) }",
                {"ids": [entry["id"]]},
                token=alice,
            )
            assert marked["data"]["markNotificationsRead"] == 1
            again = await graphql(client, "{ unreadNotificationCount }", token=alice)
            assert again["data"]["unreadNotificationCount"] == 0
            bob = await login(client, "bob@example.com")
            theirs = await graphql(
                client, "{ myNotifications { edges { node { id } } } }", token=bob
            )
            assert theirs["data"]["myNotifications"]["edges"] == []
            # The in-process worker's dispatcher sends the SMS through the development log
            # sink (no device: push, else SMS), as `make dev` does; staff see it in the log.
            await _until_sms_sent(sqlite_demo_copy)
            operator = await login(client, "operator@example.com")
            await _sms_in_the_log(client, operator, await _customer_of(client, operator))


async def _customer_of(client: httpx.AsyncClient, staff: str) -> str:
    found = await graphql(
        client, '{ customers(search: "alice@example.com") { edges { node { id } } } }', token=staff
    )
    return str(found["data"]["customers"]["edges"][0]["node"]["id"])


async def _until_sms_sent(url: str) -> None:
    """Waits on the table, not on the log's query: a query read while the dispatcher writes
    could answer differently on its planned and graphql-core runs (the suite checks both)."""
    db = Database(url)
    sent = select(func.count()).where(
        Notification.medium == Medium.SMS, Notification.status == NotificationStatus.SENT
    )
    try:
        async with asyncio.timeout(30):
            while True:
                async with db.connect() as conn:
                    if await conn.scalar(sent):
                        return
                await asyncio.sleep(0.05)
    finally:
        await db.dispose()


async def _sms_in_the_log(client: httpx.AsyncClient, staff: str, customer: str) -> None:
    log = """query($c: ID!) { notificationLog(customerId: $c, first: 5)
      { edges { node { medium status provider providerMessageId attempts } } } }"""
    body = await graphql(client, log, {"c": customer}, token=staff)
    nodes = [edge["node"] for edge in body["data"]["notificationLog"]["edges"]]
    [sms] = [node for node in nodes if node["medium"] == "SMS"]
    assert (sms["status"], sms["provider"], sms["attempts"]) == ("SENT", "log-sms", 1)


async def _recv(ws: ClientConnection) -> str:
    return str(await asyncio.wait_for(ws.recv(), 30))
