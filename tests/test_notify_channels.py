"""The channels the settings choose: log sinks in development, the real protocols when
configured (email end to end over SMTP, push by platform), and per-provider rates."""

import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest
from joserfc.jwk import ECKey, RSAKey

from adapters.log_channel import LogChannel
from adapters.sandbox_apns import create_sandbox_apns_app
from adapters.sandbox_fcm import create_sandbox_fcm_app
from adapters.sandbox_sms import create_sandbox_sms_app
from domains.clock import ManualClock
from domains.limits import MemoryRateLimiter, Rate
from domains.notifications.channel import (
    ChannelKind,
    OutgoingMessage,
    PermanentFailure,
    PushByPlatform,
    PushPlatform,
    Sent,
    TemporaryFailure,
)
from domains.notifications.throttled import ThrottledChannel
from gateway.notify_channels import delivery_channels
from gateway.settings import Settings
from tests.http2_server import serve_http2
from tests.mail_sink import mail_sink
from tests.servers import free_socket, serve, url_of
from tests.tls import self_signed


def message(channel: ChannelKind, to: str, **fields: object) -> OutgoingMessage:
    return OutgoingMessage(
        channel=channel,
        to=to,
        subject="Счёт выставлен",
        text="К оплате 1 250,00 ₽\nдо 10 декабря",
        idempotency_key="n-1",
        **fields,  # type: ignore[arg-type]
    )


async def test_development_prints_every_channel_with_no_servers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    built = delivery_channels(Settings(), clock, MemoryRateLimiter(clock))
    assert set(built.channels) == {ChannelKind.EMAIL, ChannelKind.SMS, ChannelKind.PUSH}
    with caplog.at_level(logging.INFO, logger="kabinet.notifications"):
        sent = await built.channels[ChannelKind.SMS].send(message(ChannelKind.SMS, "+79161234567"))
    await built.aclose()
    assert sent == Sent("log-sms", "log-sms-1")
    [record] = caplog.records
    assert "sms to +79161234567" in record.getMessage()
    assert "| до 10 декабря" in record.getMessage()


def test_production_sends_nothing_it_was_not_configured_for() -> None:
    clock = ManualClock()
    settings = Settings(env="production")
    assert delivery_channels(settings, clock, MemoryRateLimiter(clock)).channels == {}


async def test_configured_smtp_sends_through_the_server_with_its_credentials() -> None:
    clock = ManualClock()
    async with mail_sink(credentials=("kabinet", "pw")) as sink:
        settings = Settings(
            smtp_host="127.0.0.1",
            smtp_port=sink.port,
            smtp_starttls=False,
            smtp_user="kabinet",
            smtp_password="pw",
            smtp_from="Kabinet <billing@kabinet.test>",
        )
        built = delivery_channels(settings, clock, MemoryRateLimiter(clock))
        await built.channels[ChannelKind.EMAIL].send(message(ChannelKind.EMAIL, "a@example.ru"))
        await built.aclose()
    [received] = sink.received
    assert (received.login, received.mail_from) == ("kabinet", "billing@kabinet.test")


def test_smtp_tls_and_starttls_exclude_each_other() -> None:
    assert Settings(smtp_tls=True).smtp_starttls_enabled is False
    assert Settings().smtp_starttls_enabled is True
    with pytest.raises(ValueError, match="exclude each other"):
        Settings(smtp_tls=True, smtp_starttls=True)


async def test_a_push_platform_with_no_service_is_refused_for_good() -> None:
    push = PushByPlatform(android=LogChannel("log-push"), ios=None)
    await push.send(message(ChannelKind.PUSH, "t", platform=PushPlatform.ANDROID))
    with pytest.raises(PermanentFailure) as refused:
        await push.send(message(ChannelKind.PUSH, "t", platform=PushPlatform.IOS))
    assert refused.value.reason == "NO_CHANNEL"


async def test_a_provider_over_its_rate_is_told_when_to_come_back() -> None:
    clock = ManualClock()
    channel = ThrottledChannel(
        LogChannel("smsc"),
        provider="smsc",
        rate=Rate(2, timedelta(seconds=1)),
        limiter=MemoryRateLimiter(clock),
    )
    sms = message(ChannelKind.SMS, "+79161234567")
    await channel.send(sms)
    await channel.send(sms)
    with pytest.raises(TemporaryFailure) as throttled:
        await channel.send(sms)
    assert (throttled.value.provider, throttled.value.reason) == ("smsc", "RATE_LIMITED")
    assert throttled.value.retry_after == timedelta(milliseconds=500)

    clock.advance(timedelta(milliseconds=500))
    assert (await channel.send(sms)).provider_message_id == "smsc-3"


async def test_rates_from_settings_wrap_the_named_providers_only() -> None:
    clock = ManualClock()
    settings = Settings(
        sms_url="http://127.0.0.1:1",
        sms_login="kabinet",
        sms_password="pw",
        notify_provider_rates={"smsc": 30},
    )
    built = delivery_channels(settings, clock, MemoryRateLimiter(clock))
    assert isinstance(built.channels[ChannelKind.SMS], ThrottledChannel)
    assert isinstance(built.channels[ChannelKind.EMAIL], LogChannel)
    assert built.report_secrets == {}
    await built.aclose()


async def test_push_from_settings_reaches_fcm_and_apns_by_platform(tmp_path: Path) -> None:
    """The key files as an operator deploys them, read by the wiring; each platform's
    message reaches its own sandbox."""
    clock = ManualClock()
    rsa, ec = RSAKey.generate_key(2048), ECKey.generate_key("P-256")
    certificate = self_signed(tmp_path)
    fcm_socket, apns_socket = free_socket(), free_socket()
    fcm_app = create_sandbox_fcm_app(
        project_id="kabinet-prod",
        client_email="push@kabinet-prod.iam.gserviceaccount.com",
        key_id="k1",
        public_key_pem=rsa.as_pem(private=False).decode(),
        token_uri=f"{url_of(fcm_socket)}/token",
        clock=clock,
    )
    apns_app = create_sandbox_apns_app(
        team_id="TEAM123456",
        key_id="APNSKEY123",
        public_key_pem=ec.as_pem(private=False).decode(),
        topics=frozenset({"ru.kabinet.app"}),
        clock=clock,
    )
    service_account = tmp_path / "service-account.json"
    service_account.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "kabinet-prod",
                "private_key_id": "k1",
                "private_key": rsa.as_pem(private=True).decode(),
                "client_email": "push@kabinet-prod.iam.gserviceaccount.com",
                "token_uri": f"{url_of(fcm_socket)}/token",
            }
        )
    )
    apns_key = tmp_path / "AuthKey_APNSKEY123.p8"
    apns_key.write_bytes(ec.as_pem(private=True))
    with (
        serve(fcm_app, fcm_socket) as fcm_url,
        serve_http2(apns_app, apns_socket, certificate) as apns_url,
    ):
        settings = Settings(
            env="production",
            fcm_service_account_file=service_account,
            fcm_url=fcm_url,
            apns_key_file=apns_key,
            apns_key_id="APNSKEY123",
            apns_team_id="TEAM123456",
            apns_topic="ru.kabinet.app",
            apns_url=apns_url,
            apns_ca_file=certificate.cert_file,
        )
        built = delivery_channels(settings, clock, MemoryRateLimiter(clock))
        push = built.channels[ChannelKind.PUSH]
        android = await push.send(
            message(ChannelKind.PUSH, "fcm-token", platform=PushPlatform.ANDROID)
        )
        ios = await push.send(message(ChannelKind.PUSH, "c" * 64, platform=PushPlatform.IOS))
        await built.aclose()
    assert set(built.channels) == {ChannelKind.PUSH}
    assert (android.provider, ios.provider) == ("fcm", "apns")
    assert [m["token"] for m in fcm_app.state.sandbox.received] == ["fcm-token"]
    assert [d.device for d in apns_app.state.sandbox.received] == ["c" * 64]


async def test_sms_from_settings_fails_over_and_knows_each_gateways_report_secret() -> None:
    clock = ManualClock()
    primary_socket, reserve_socket = free_socket(), free_socket()
    primary = create_sandbox_sms_app(login="kabinet", password="one", clock=clock)
    reserve = create_sandbox_sms_app(login="kabinet-r", password="two", clock=clock)
    primary.state.sandbox.down = True
    with (
        serve(primary, primary_socket) as primary_url,
        serve(reserve, reserve_socket) as reserve_url,
    ):
        settings = Settings(
            env="production",
            sms_url=primary_url,
            sms_login="kabinet",
            sms_password="one",
            sms_report_secret="s1",
            sms_failover_url=reserve_url,
            sms_failover_login="kabinet-r",
            sms_failover_password="two",
            sms_failover_report_secret="s2",
        )
        built = delivery_channels(settings, clock, MemoryRateLimiter(clock))
        sent = await built.channels[ChannelKind.SMS].send(message(ChannelKind.SMS, "+79161234567"))
        await built.aclose()
    assert sent.provider == "smsc-reserve"
    assert [m["phone"] for m in reserve.state.sandbox.messages.values()] == ["79161234567"]
    assert built.report_secrets == {"smsc": b"s1", "smsc-reserve": b"s2"}
