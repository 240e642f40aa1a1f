"""The channels the settings choose: log sinks in development, the real protocols when
configured (email end to end over SMTP, push by platform), and per-provider rates."""

import logging
from datetime import timedelta

import pytest

from adapters.log_channel import LogChannel
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
from tests.mail_sink import mail_sink


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
