"""iOS push through APNs against a sandbox APNs served over TLS and HTTP/2: the request and
its headers, the ES256 provider token reused and renewed, and APNs' error answers."""

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from joserfc import jwt
from joserfc.jwk import ECKey

from adapters.apns_channel import ApnsChannel
from adapters.sandbox_apns import SandboxApns, create_sandbox_apns_app
from domains.clock import ManualClock
from domains.notifications.channel import (
    ChannelKind,
    OutgoingMessage,
    PermanentFailure,
    PushByPlatform,
    PushPlatform,
    PushPriority,
    RecipientGone,
    Sent,
    TemporaryFailure,
)
from tests.http2_server import serve_http2
from tests.servers import free_socket
from tests.tls import Certificate, self_signed

TEAM = "A1B2C3D4E5"
KEY_ID = "K9X8W7V6U5"
TOPIC = "ru.kabinet.app"
DEVICE = "a" * 64


@dataclass
class Apns:
    url: str
    sandbox: SandboxApns
    clock: ManualClock
    key_pem: str
    certificate: Certificate

    def channel(self, clock: ManualClock | None = None, key_pem: str | None = None) -> ApnsChannel:
        return ApnsChannel(
            key_pem=key_pem or self.key_pem,
            key_id=KEY_ID,
            team_id=TEAM,
            topic=TOPIC,
            clock=clock or self.clock,
            base_url=self.url,
            tls_context=self.certificate.client_context(),
        )


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Apns]:
    key = ECKey.generate_key("P-256")
    clock = ManualClock()
    certificate = self_signed(Path(tmp_path_factory.mktemp("apns")))
    app = create_sandbox_apns_app(
        team_id=TEAM,
        key_id=KEY_ID,
        public_key_pem=key.as_pem(private=False).decode(),
        topics=frozenset({TOPIC, "ru.kabinet.business"}),
        clock=clock,
    )
    with serve_http2(app, free_socket(), certificate) as url:
        yield Apns(url, app.state.sandbox, clock, key.as_pem(private=True).decode(), certificate)


@pytest_asyncio.fixture
async def apns(running: Apns) -> AsyncIterator[Apns]:
    sandbox = running.sandbox
    sandbox.received.clear()
    sandbox.unregistered.clear()
    sandbox.throttled = False
    # Each test starts a token's lifetime after the last one's tokens: none throttles it.
    running.clock.advance(timedelta(minutes=61))
    yield running


def push(device: str = DEVICE, **fields: object) -> OutgoingMessage:
    values: dict[str, object] = {
        "channel": ChannelKind.PUSH,
        "platform": PushPlatform.IOS,
        "to": device,
        "subject": "Новый ответ в обращении",
        "text": "Оператор ответил на обращение №77",
        "data": {"ticketId": "77"},
        "idempotency_key": "n-7",
    }
    return OutgoingMessage(**(values | fields))  # type: ignore[arg-type]


async def test_apns_receives_the_alert_over_http2_with_a_valid_provider_token(
    apns: Apns,
) -> None:
    channel = apns.channel()
    expires = apns.clock.now() + timedelta(hours=6)
    sent = await channel.send(push(expires_at=expires))
    await channel.aclose()

    [delivered] = apns.sandbox.received
    assert delivered.http_version == "2"
    assert delivered.device == DEVICE
    assert delivered.payload == {
        "ticketId": "77",
        "aps": {
            "alert": {
                "title": "Новый ответ в обращении",
                "body": "Оператор ответил на обращение №77",
            },
            "sound": "default",
        },
    }
    headers = delivered.headers
    assert headers["apns-topic"] == TOPIC
    assert headers["apns-push-type"] == "alert"
    assert headers["apns-priority"] == "10"
    assert headers["apns-expiration"] == str(int(expires.timestamp()))
    assert sent == Sent("apns", headers["apns-id"])
    token = jwt.decode(headers["authorization"].split()[1], ECKey.import_key(apns.key_pem))
    assert token.header == {"alg": "ES256", "kid": KEY_ID, "typ": "JWT"}
    assert token.claims == {"iss": TEAM, "iat": int(apns.clock.now().timestamp())}


async def test_the_same_message_keeps_its_apns_id_and_another_app_its_topic(apns: Apns) -> None:
    channel = apns.channel()
    first = await channel.send(push())
    again = await channel.send(push(app_id="ru.kabinet.business", priority=PushPriority.NORMAL))
    await channel.aclose()
    assert first == again
    assert [d.headers["apns-topic"] for d in apns.sandbox.received] == [
        TOPIC,
        "ru.kabinet.business",
    ]
    assert apns.sandbox.received[1].headers["apns-priority"] == "5"


async def test_the_provider_token_is_reused_then_renewed_after_forty_minutes(apns: Apns) -> None:
    channel = apns.channel()
    seen = len(apns.sandbox.provider_tokens)
    await asyncio.gather(*(channel.send(push(f"{n:064x}")) for n in range(10)))
    apns.clock.advance(timedelta(minutes=39))
    await channel.send(push())
    assert len(apns.sandbox.provider_tokens) == seen + 1

    apns.clock.advance(timedelta(minutes=1))
    await channel.send(push())
    await channel.aclose()
    assert len(apns.sandbox.received) == 12
    first, renewed = apns.sandbox.provider_tokens[-2:]
    assert renewed[1] - first[1] == timedelta(minutes=40)


def test_a_refresh_period_outside_apples_bounds_is_refused(apns: Apns) -> None:
    for period in (timedelta(minutes=10), timedelta(minutes=60)):
        with pytest.raises(ValueError, match="20 to 60 minutes"):
            ApnsChannel(
                key_pem=apns.key_pem,
                key_id=KEY_ID,
                team_id=TEAM,
                topic=TOPIC,
                clock=apns.clock,
                token_refresh=period,
            )


async def test_a_token_apns_calls_expired_is_renewed_at_once(apns: Apns) -> None:
    # Our clock runs behind APNs': our token still looks fresh to us, not to APNs.
    ours = ManualClock(apns.clock.now())
    channel = apns.channel(clock=ours)
    await channel.send(push())
    apns.clock.advance(timedelta(minutes=61))
    ours.advance(timedelta(minutes=30))
    await channel.send(push())
    await channel.aclose()
    assert len(apns.sandbox.received) == 2
    first, renewed = apns.sandbox.provider_tokens[-2:]
    assert renewed[1] - first[1] == timedelta(minutes=30)


@pytest.mark.parametrize(
    ("device", "reason"), [("b" * 64, "Unregistered"), ("zz", "BadDeviceToken")]
)
async def test_a_dead_device_token_is_gone(apns: Apns, device: str, reason: str) -> None:
    apns.sandbox.unregistered[device] = apns.clock.now()
    channel = apns.channel()
    with pytest.raises(RecipientGone) as gone:
        await channel.send(push(device))
    await channel.aclose()
    assert (gone.value.provider, gone.value.reason) == ("apns", reason)
    assert apns.sandbox.received == []


async def test_a_payload_over_four_kilobytes_is_permanent(apns: Apns) -> None:
    channel = apns.channel()
    with pytest.raises(PermanentFailure) as refused:
        await channel.send(push(text="я" * 2100))
    await channel.aclose()
    assert not isinstance(refused.value, RecipientGone)
    assert refused.value.reason == "PayloadTooLarge"


async def test_a_topic_not_ours_is_permanent(apns: Apns) -> None:
    channel = apns.channel()
    with pytest.raises(PermanentFailure) as refused:
        await channel.send(push(app_id="com.example.other"))
    await channel.aclose()
    assert refused.value.reason == "TopicDisallowed"


async def test_another_key_and_throttling_are_temporary(apns: Apns) -> None:
    stranger = ECKey.generate_key("P-256").as_pem(private=True).decode()
    channel = apns.channel(key_pem=stranger)
    with pytest.raises(TemporaryFailure) as invalid:
        await channel.send(push())
    await channel.aclose()
    assert invalid.value.reason == "InvalidProviderToken"

    apns.sandbox.throttled = True
    channel = apns.channel()
    with pytest.raises(TemporaryFailure) as throttled:
        await channel.send(push())
    await channel.aclose()
    assert throttled.value.reason == "TooManyRequests"


async def test_push_by_platform_sends_ios_through_apns(apns: Apns) -> None:
    channel = apns.channel()
    push_channel = PushByPlatform(android=channel, ios=channel)
    await push_channel.send(push())
    with pytest.raises(PermanentFailure) as refused:
        await push_channel.send(push(platform=None))
    await channel.aclose()
    assert refused.value.reason == "NO_PLATFORM"
    assert len(apns.sandbox.received) == 1
