"""The notification channels, built from settings: which adapter sends each kind of message.

Email goes over SMTP when `KABINET_SMTP_HOST` is set, SMS through the gateway at
`KABINET_SMS_URL` (and the failover one), Android push through FCM with the service
account's key, iOS push through APNs with the team's key. Whatever is left unset prints
what it would send (the log sink) in development, and is absent in production, where the
dispatcher then fails those messages rather than pretend. A provider named in
`KABINET_NOTIFY_PROVIDER_RATES` is throttled to it, on the services' shared limiter.
"""

import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from adapters.apns_channel import ApnsChannel
from adapters.fcm_channel import FcmChannel, ServiceAccount
from adapters.log_channel import LogChannel
from adapters.sms_gateway import SmsFailover, SmsGateway
from adapters.smtp_channel import SmtpChannel
from domains.clock import Clock
from domains.limits import Rate, RateLimiter
from domains.notifications.channel import Channel, ChannelKind, PushByPlatform
from domains.notifications.throttled import ThrottledChannel
from gateway.settings import Settings


@dataclass
class DeliveryChannels:
    channels: dict[ChannelKind, Channel]
    # The SMS gateways' delivery-report secrets, by provider name, for their callbacks.
    report_secrets: dict[str, bytes] = field(default_factory=dict)
    _closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def aclose(self) -> None:
        for close in self._closers:
            await close()


def delivery_channels(settings: Settings, clock: Clock, limiter: RateLimiter) -> DeliveryChannels:
    built = DeliveryChannels({})
    sink = settings.notify_log_sink_enabled

    def throttled(provider: str, channel: Channel) -> Channel:
        per_second = settings.notify_provider_rates.get(provider)
        if per_second is None:
            return channel
        rate = Rate(per_second, timedelta(seconds=1))
        return ThrottledChannel(channel, provider=provider, rate=rate, limiter=limiter)

    email = _smtp(settings, clock)
    if email is not None:
        built._closers.append(email.aclose)
        built.channels[ChannelKind.EMAIL] = throttled("smtp", email)
    elif sink:
        built.channels[ChannelKind.EMAIL] = LogChannel("log-email")

    gateways: list[Channel] = []
    for gateway, secret in _sms_gateways(settings):
        built._closers.append(gateway.aclose)
        if secret is not None:
            built.report_secrets[gateway.name] = secret.encode()
        gateways.append(throttled(gateway.name, gateway))
    if gateways:
        built.channels[ChannelKind.SMS] = (
            SmsFailover(gateways[0], gateways[1]) if len(gateways) == 2 else gateways[0]
        )
    elif sink:
        built.channels[ChannelKind.SMS] = LogChannel("log-sms")

    android: Channel | None = None
    ios: Channel | None = None
    if settings.fcm_service_account_file is not None:
        account = ServiceAccount.from_json(settings.fcm_service_account_file.read_text())
        fcm = FcmChannel(account, clock=clock, base_url=settings.fcm_url)
        built._closers.append(fcm.aclose)
        android = throttled("fcm", fcm)
    apns = _apns(settings, clock)
    if apns is not None:
        built._closers.append(apns.aclose)
        ios = throttled("apns", apns)
    if android is not None or ios is not None:
        built.channels[ChannelKind.PUSH] = PushByPlatform(android=android, ios=ios)
    elif sink:
        built.channels[ChannelKind.PUSH] = LogChannel("log-push")
    return built


def report_secrets(settings: Settings) -> dict[str, bytes]:
    """The delivery-report secret of each SMS gateway that has one, by provider name: the
    API checks their callbacks with them."""
    accounts = (
        (settings.sms_provider, settings.sms_report_secret),
        (settings.sms_failover_provider, settings.sms_failover_report_secret),
    )
    return {name: secret.get_secret_value().encode() for name, secret in accounts if secret}


def _context(ca_file: Path | None) -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=str(ca_file)) if ca_file is not None else None


def _smtp(settings: Settings, clock: Clock) -> SmtpChannel | None:
    if settings.smtp_host is None:
        return None
    return SmtpChannel(
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=settings.smtp_from,
        clock=clock,
        username=settings.smtp_user,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        starttls=settings.smtp_starttls_enabled,
        tls=settings.smtp_tls,
        tls_context=_context(settings.smtp_ca_file),
        connections=settings.smtp_connections,
    )


def _sms_gateways(settings: Settings) -> list[tuple[SmsGateway, str | None]]:
    accounts = [
        (
            settings.sms_provider,
            settings.sms_url,
            settings.sms_login,
            settings.sms_password,
            settings.sms_report_secret,
        ),
        (
            settings.sms_failover_provider,
            settings.sms_failover_url,
            settings.sms_failover_login,
            settings.sms_failover_password,
            settings.sms_failover_report_secret,
        ),
    ]
    gateways = []
    for name, url, login, password, secret in accounts:
        if url is None:
            continue
        if login is None or password is None:
            raise RuntimeError(f"the SMS gateway {name} at {url} needs its login and password")
        gateway = SmsGateway(
            name, url, login=login, password=password.get_secret_value(), sender=settings.sms_sender
        )
        gateways.append((gateway, secret.get_secret_value() if secret is not None else None))
    return gateways


def _apns(settings: Settings, clock: Clock) -> ApnsChannel | None:
    if settings.apns_key_file is None:
        return None
    if not (settings.apns_key_id and settings.apns_team_id and settings.apns_topic):
        raise RuntimeError(
            "APNs needs KABINET_APNS_KEY_ID, KABINET_APNS_TEAM_ID and KABINET_APNS_TOPIC "
            "beside its key file"
        )
    return ApnsChannel(
        key_pem=settings.apns_key_file.read_text(),
        key_id=settings.apns_key_id,
        team_id=settings.apns_team_id,
        topic=settings.apns_topic,
        clock=clock,
        base_url=settings.apns_url,
        tls_context=_context(settings.apns_ca_file),
    )
