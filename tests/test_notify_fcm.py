"""Android push through FCM HTTP v1 against a sandbox of Google's token endpoint and FCM,
served over HTTP: the signed assertion, the cached access token, the message, the errors."""

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
import pytest_asyncio
from joserfc.jwk import RSAKey

from adapters.fcm_channel import FcmChannel, ServiceAccount
from adapters.sandbox_fcm import SandboxFcm, create_sandbox_fcm_app
from domains.clock import ManualClock
from domains.notifications.channel import (
    ChannelKind,
    OutgoingMessage,
    PermanentFailure,
    PushPlatform,
    PushPriority,
    RecipientGone,
    TemporaryFailure,
)
from tests.servers import free_socket, serve, url_of

PROJECT = "kabinet-test"
EMAIL = "push@kabinet-test.iam.gserviceaccount.com"
KEY_ID = "3f1c0e6a9b"


@dataclass
class Fcm:
    url: str
    sandbox: SandboxFcm
    clock: ManualClock
    private_key_pem: str

    def account(self, private_key_pem: str | None = None) -> ServiceAccount:
        """The key file's fields, as Google's console gives it (JSON)."""
        return ServiceAccount.from_json(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": PROJECT,
                    "private_key_id": KEY_ID,
                    "private_key": private_key_pem or self.private_key_pem,
                    "client_email": EMAIL,
                    "token_uri": f"{self.url}/token",
                }
            )
        )

    def channel(self, account: ServiceAccount | None = None) -> FcmChannel:
        return FcmChannel(account or self.account(), clock=self.clock, base_url=self.url)


@pytest.fixture(scope="module")
def running() -> Iterator[Fcm]:
    key = RSAKey.generate_key(2048)
    clock = ManualClock()
    sock = free_socket()
    app = create_sandbox_fcm_app(
        project_id=PROJECT,
        client_email=EMAIL,
        key_id=KEY_ID,
        public_key_pem=key.as_pem(private=False).decode(),
        token_uri=f"{url_of(sock)}/token",
        clock=clock,
    )
    with serve(app, sock) as url:
        yield Fcm(url, app.state.sandbox, clock, key.as_pem(private=True).decode())


@pytest_asyncio.fixture
async def fcm(running: Fcm) -> AsyncIterator[Fcm]:
    sandbox = running.sandbox
    sandbox.received.clear()
    sandbox.unregistered.clear()
    sandbox.token_requests = 0
    sandbox.quota_exceeded = sandbox.unavailable = False
    yield running


def push(device: str = "fcm-token-1", **fields: object) -> OutgoingMessage:
    values: dict[str, object] = {
        "channel": ChannelKind.PUSH,
        "platform": PushPlatform.ANDROID,
        "to": device,
        "subject": "Платёж зачислен",
        "text": "500,00 ₽ на счёт 100-200",
        "data": {"event": "payment.created", "paymentId": "42"},
        "idempotency_key": "n-1",
    }
    return OutgoingMessage(**(values | fields))  # type: ignore[arg-type]


async def test_the_sandbox_receives_the_message_with_a_valid_token(fcm: Fcm) -> None:
    channel = fcm.channel()
    sent = await channel.send(push(expires_at=fcm.clock.now() + timedelta(hours=1)))
    await channel.aclose()

    assert fcm.sandbox.token_requests == 1
    assert sent.provider == "fcm"
    assert sent.provider_message_id.startswith(f"projects/{PROJECT}/messages/0:1%")
    assert fcm.sandbox.received == [
        {
            "token": "fcm-token-1",
            "notification": {"title": "Платёж зачислен", "body": "500,00 ₽ на счёт 100-200"},
            "data": {"event": "payment.created", "paymentId": "42"},
            "android": {"priority": "HIGH", "ttl": "3600s"},
        }
    ]


async def test_one_token_serves_many_messages_until_near_its_expiry(fcm: Fcm) -> None:
    channel = fcm.channel()
    await asyncio.gather(*(channel.send(push(f"t-{n}")) for n in range(20)))
    assert fcm.sandbox.token_requests == 1
    assert len(fcm.sandbox.received) == 20

    fcm.clock.advance(timedelta(minutes=54))
    await channel.send(push(priority=PushPriority.NORMAL))
    assert fcm.sandbox.token_requests == 1
    assert fcm.sandbox.received[-1]["android"] == {"priority": "NORMAL"}

    # Within five minutes of its end (the hour less a second): a new one first.
    fcm.clock.advance(timedelta(minutes=1, seconds=30))
    await channel.send(push())
    assert fcm.sandbox.token_requests == 2
    await channel.aclose()


async def test_a_refused_token_is_replaced_and_the_message_sent(fcm: Fcm) -> None:
    channel = fcm.channel()
    await channel.send(push())
    fcm.sandbox.tokens.clear()  # revoked on Google's side
    await channel.send(push("fcm-token-2"))
    await channel.aclose()
    assert fcm.sandbox.token_requests == 2
    assert [m["token"] for m in fcm.sandbox.received] == ["fcm-token-1", "fcm-token-2"]


async def test_an_assertion_signed_with_another_key_gets_no_token(fcm: Fcm) -> None:
    stranger = RSAKey.generate_key(2048).as_pem(private=True).decode()
    channel = fcm.channel(fcm.account(stranger))
    with pytest.raises(TemporaryFailure) as refused:
        await channel.send(push())
    await channel.aclose()
    assert refused.value.reason == "TOKEN_REFUSED"
    assert "Invalid JWT Signature" in refused.value.detail
    assert fcm.sandbox.received == []


async def test_an_unregistered_token_is_gone(fcm: Fcm) -> None:
    fcm.sandbox.unregistered.add("fcm-stale")
    channel = fcm.channel()
    with pytest.raises(RecipientGone) as gone:
        await channel.send(push("fcm-stale"))
    await channel.aclose()
    assert (gone.value.provider, gone.value.reason) == ("fcm", "UNREGISTERED")


async def test_a_payload_over_four_kilobytes_is_refused_for_good(fcm: Fcm) -> None:
    channel = fcm.channel()
    with pytest.raises(PermanentFailure) as refused:
        await channel.send(push(data={"blob": "x" * 5000}))
    await channel.aclose()
    assert not isinstance(refused.value, RecipientGone)
    assert refused.value.reason == "INVALID_ARGUMENT"


@pytest.mark.parametrize(
    ("flag", "reason", "seconds"),
    [("quota_exceeded", "QUOTA_EXCEEDED", 60), ("unavailable", "UNAVAILABLE", 30)],
)
async def test_quota_and_outages_are_temporary_with_retry_after(
    fcm: Fcm, flag: str, reason: str, seconds: int
) -> None:
    setattr(fcm.sandbox, flag, True)
    channel = fcm.channel()
    with pytest.raises(TemporaryFailure) as failed:
        await channel.send(push())
    await channel.aclose()
    assert failed.value.reason == reason
    assert failed.value.retry_after == timedelta(seconds=seconds)
