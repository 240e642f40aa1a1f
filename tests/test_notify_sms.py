"""SMS through the SMSC-shaped gateway against two sandbox gateways served over HTTP:
what arrives, what is whose failure, failover, and the signed delivery report."""

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
import pytest
import pytest_asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters.sandbox_sms import SandboxSms, create_sandbox_sms_app
from adapters.sms_gateway import SmsFailover, SmsGateway
from domains.clock import ManualClock
from domains.errors import Unauthenticated
from domains.notifications.channel import (
    ChannelKind,
    DeliveryReport,
    DeliveryStatus,
    OutgoingMessage,
    PermanentFailure,
    TemporaryFailure,
)
from domains.notifications.sms import sms_length
from domains.notifications.sms_report import read_report, report_signature
from tests.servers import free_socket, serve, url_of

SECRET = b"sms-callback-secret"
TOLERANCE = timedelta(minutes=5)


@dataclass
class Receiver:
    """Our side of the callback: verifies each report as the gateway's route will."""

    clock: ManualClock
    reports: list[DeliveryReport] = field(default_factory=list)

    def app(self) -> Starlette:
        async def receive(request: Request) -> Response:
            try:
                report = read_report(
                    provider=request.path_params["provider"],
                    secret=SECRET,
                    timestamp=request.headers.get("x-signature-timestamp", ""),
                    signature=request.headers.get("x-signature", ""),
                    body=await request.body(),
                    now=self.clock.now(),
                    tolerance=TOLERANCE,
                )
            except Unauthenticated:
                return Response("bad signature", status_code=401)
            if report is not None:
                self.reports.append(report)
            return Response("OK")

        return Starlette(routes=[Route("/webhooks/sms/{provider}", receive, methods=["POST"])])


@dataclass
class Gateways:
    primary_url: str
    secondary_url: str
    primary: SandboxSms
    secondary: SandboxSms
    receiver: Receiver
    opened: list[SmsGateway] = field(default_factory=list)

    def gateway(self, name: str = "primary", password: str | None = None) -> SmsGateway:
        """Our account on the named sandbox; its own password unless told another."""
        url = self.primary_url if name == "primary" else self.secondary_url
        gateway = SmsGateway(
            name,
            url,
            login=f"kabinet-{name}",
            password=password or f"{name}-pass",
            sender="Kabinet",
        )
        self.opened.append(gateway)
        return gateway


@pytest.fixture(scope="module")
def running() -> Iterator[Gateways]:
    clock = ManualClock()
    receiver = Receiver(clock)
    receiver_socket, primary_socket, secondary_socket = free_socket(), free_socket(), free_socket()
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
    with (
        serve(receiver.app(), receiver_socket),
        serve(apps["primary"], primary_socket) as primary_url,
        serve(apps["secondary"], secondary_socket) as secondary_url,
    ):
        yield Gateways(
            primary_url,
            secondary_url,
            apps["primary"].state.sandbox,
            apps["secondary"].state.sandbox,
            receiver,
        )


@pytest_asyncio.fixture
async def gateways(running: Gateways) -> AsyncIterator[Gateways]:
    for sandbox in (running.primary, running.secondary):
        sandbox.messages.clear()
        sandbox.by_client_id.clear()
        sandbox.down = False
    running.receiver.reports.clear()
    yield running
    for gateway in running.opened:
        await gateway.aclose()
    running.opened.clear()


def sms(
    to: str = "+79161234567", key: str = "n-1", text: str = "Платёж 500 ₽ зачислен"
) -> OutgoingMessage:
    return OutgoingMessage(channel=ChannelKind.SMS, to=to, text=text, idempotency_key=key)


async def test_the_gateway_receives_the_message_from_our_account(gateways: Gateways) -> None:
    gateway = gateways.gateway()
    sent = await gateway.send(sms())

    [message] = gateways.primary.messages.values()
    assert sent.provider == "primary"
    assert sent.provider_message_id == message["id"]
    assert message["phone"] == "79161234567"
    assert message["text"] == "Платёж 500 ₽ зачислен"
    assert message["sender"] == "Kabinet"
    assert message["client_id"] == "n-1"
    assert message["cnt"] == 1
    assert gateways.secondary.messages == {}


async def test_a_retried_message_is_sent_once(gateways: Gateways) -> None:
    gateway = gateways.gateway()
    first, again = await gateway.send(sms()), await gateway.send(sms())
    assert first == again
    assert len(gateways.primary.messages) == 1


@pytest.mark.parametrize(
    ("to", "reason"), [("+7999000123", "ERROR_7"), ("+79990001234", "ERROR_8")]
)
async def test_a_bad_number_is_permanent_and_not_tried_elsewhere(
    gateways: Gateways, to: str, reason: str
) -> None:
    failover = SmsFailover(gateways.gateway(), gateways.gateway("secondary"))
    with pytest.raises(PermanentFailure) as refused:
        await failover.send(sms(to))
    assert refused.value.reason == reason
    assert gateways.primary.messages == gateways.secondary.messages == {}


async def test_a_wrong_password_is_the_gateways_failure_not_the_messages(
    gateways: Gateways,
) -> None:
    with pytest.raises(TemporaryFailure) as refused:
        await gateways.gateway(password="wrong").send(sms())
    assert refused.value.reason == "ERROR_2"
    assert gateways.primary.messages == {}


async def test_failover_sends_through_the_second_gateway_while_the_first_is_down(
    gateways: Gateways,
) -> None:
    async with httpx.AsyncClient(base_url=gateways.primary_url) as control:
        assert (await control.post("/sandbox/outage")).json() == {"down": True}
    failover = SmsFailover(gateways.gateway(), gateways.gateway("secondary"))

    sent = await failover.send(sms())

    assert sent.provider == "secondary"
    assert gateways.primary.messages == {}
    [message] = gateways.secondary.messages.values()
    assert message["id"] == sent.provider_message_id
    assert message["client_id"] == "n-1"


async def test_with_both_gateways_down_the_failure_is_temporary(gateways: Gateways) -> None:
    gateways.primary.down = gateways.secondary.down = True
    failover = SmsFailover(gateways.gateway(), gateways.gateway("secondary"))
    with pytest.raises(TemporaryFailure) as failed:
        await failover.send(sms())
    assert (failed.value.provider, failed.value.reason) == ("secondary", "HTTP_503")


async def test_an_unreachable_gateway_fails_over_too(gateways: Gateways) -> None:
    with free_socket() as unused:
        dead = SmsGateway("dead", url_of(unused), login="x", password="y", sender="Kabinet")
    sent = await SmsFailover(dead, gateways.gateway()).send(sms())
    await dead.aclose()
    assert sent.provider == "primary"


async def test_the_delivery_report_comes_back_signed_and_verified(gateways: Gateways) -> None:
    delivered = await gateways.gateway().send(sms(key="n-delivered"))
    failed = await gateways.gateway().send(sms(key="n-failed"))
    async with httpx.AsyncClient(base_url=gateways.primary_url) as control:
        ok = await control.post(f"/sandbox/messages/{delivered.provider_message_id}/delivered")
        ko = await control.post(f"/sandbox/messages/{failed.provider_message_id}/failed")
    assert ok.json() == ko.json() == {"callback_status": 200}

    first, second = gateways.receiver.reports
    assert (first.provider, first.provider_message_id, first.status) == (
        "primary",
        delivered.provider_message_id,
        DeliveryStatus.DELIVERED,
    )
    assert first.at == gateways.receiver.clock.now().replace(microsecond=0)
    assert (second.provider_message_id, second.status) == (
        failed.provider_message_id,
        DeliveryStatus.FAILED,
    )


async def test_a_forged_or_replayed_report_is_refused(gateways: Gateways) -> None:
    sent = await gateways.gateway().send(sms())
    now = int(gateways.receiver.clock.now().timestamp())
    body = f"id={sent.provider_message_id}&phone=79161234567&status=1&time={now}&err=0".encode()
    stale = str(now - int(TOLERANCE.total_seconds()) - 1)
    async with httpx.AsyncClient() as client:
        forged = await client.post(
            f"{gateways.primary.report_url}",
            content=body,
            headers={"X-Signature-Timestamp": str(now), "X-Signature": "v1=" + "0" * 64},
        )
        # Rightly signed, but at a time past the tolerance: a captured report replayed.
        replayed = await client.post(
            f"{gateways.primary.report_url}",
            content=body,
            headers={
                "X-Signature-Timestamp": stale,
                "X-Signature": report_signature(SECRET, stale, body),
            },
        )
    assert forged.status_code == replayed.status_code == 401
    assert gateways.receiver.reports == []


def test_segments_count_gsm7_and_ucs2() -> None:
    assert sms_length("a" * 160).segments == 1
    assert sms_length("a" * 161).segments == 2
    assert sms_length("€" * 80).segments == 1  # two GSM-7 septets each
    assert sms_length("я" * 70).segments == 1
    assert sms_length("я" * 71).segments == 2
    assert sms_length("я" * 134).segments == 2
