"""Email over SMTP against a real server (aiosmtpd): both parts, AUTH, STARTTLS, reused
sessions, and which failures are final."""

import asyncio
from pathlib import Path

import pytest

from adapters.smtp_channel import SmtpChannel
from domains.clock import ManualClock
from domains.notifications.channel import (
    ChannelKind,
    OutgoingMessage,
    PermanentFailure,
    TemporaryFailure,
)
from tests.mail_sink import mail_sink
from tests.servers import free_socket
from tests.tls import self_signed

CREDENTIALS = ("kabinet", "smtp-secret")


def invoice_email(to: str = "ivanova@example.ru", key: str = "n-1") -> OutgoingMessage:
    return OutgoingMessage(
        channel=ChannelKind.EMAIL,
        to=to,
        subject="Счёт за ноябрь",
        text="К оплате 1 250,00 ₽ до 10 декабря.",
        html="<p>К оплате <b>1 250,00 ₽</b> до 10 декабря.</p>",
        idempotency_key=key,
    )


def channel(port: int, **options: object) -> SmtpChannel:
    return SmtpChannel(
        host="127.0.0.1",
        port=port,
        sender="Kabinet <noreply@kabinet.test>",
        clock=ManualClock(),
        **options,  # type: ignore[arg-type]
    )


async def test_the_sink_receives_text_and_html_from_the_signed_in_sender() -> None:
    async with mail_sink(credentials=CREDENTIALS) as sink:
        smtp = channel(sink.port, username=CREDENTIALS[0], password=CREDENTIALS[1])
        sent = await smtp.send(invoice_email())
        await smtp.aclose()

    [received] = sink.received
    assert received.login == "kabinet"
    assert received.mail_from == "noreply@kabinet.test"
    assert received.rcpt_tos == ["ivanova@example.ru"]
    email = received.message
    assert sent.provider == "smtp"
    assert email["Message-ID"] == sent.provider_message_id
    assert email["Subject"] == "Счёт за ноябрь"
    assert email["X-Kabinet-Notification"] == "n-1"
    assert email.get_content_type() == "multipart/alternative"
    text, html = email.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert text.get_content().strip() == "К оплате 1 250,00 ₽ до 10 декабря."
    assert html.get_content_type() == "text/html"
    assert "<b>1 250,00 ₽</b>" in html.get_content()


async def test_text_only_mail_has_one_part() -> None:
    async with mail_sink() as sink:
        smtp = channel(sink.port)
        message = invoice_email()
        await smtp.send(
            OutgoingMessage(
                channel=message.channel,
                to=message.to,
                subject="Код",
                text="Ваш код: 1234",
                idempotency_key="n-2",
            )
        )
        await smtp.aclose()
    [received] = sink.received
    assert received.login is None
    assert received.message.get_content_type() == "text/plain"


async def test_many_messages_share_a_few_sessions() -> None:
    async with mail_sink(credentials=CREDENTIALS) as sink:
        smtp = channel(sink.port, username=CREDENTIALS[0], password=CREDENTIALS[1], connections=3)
        sent = await asyncio.gather(
            *(smtp.send(invoice_email(f"user{n}@example.ru", f"n-{n}")) for n in range(60))
        )
        await smtp.aclose()

    assert len(sink.received) == 60
    assert {r.rcpt_tos[0] for r in sink.received} == {f"user{n}@example.ru" for n in range(60)}
    assert len({s.provider_message_id for s in sent}) == 60
    assert sink.sessions <= 3


async def test_starttls_protects_the_session_and_its_password(tmp_path: Path) -> None:
    certificate = self_signed(tmp_path)
    async with mail_sink(credentials=CREDENTIALS, tls_context=certificate.server_context()) as sink:
        smtp = channel(
            sink.port,
            username=CREDENTIALS[0],
            password=CREDENTIALS[1],
            starttls=True,
            tls_context=certificate.client_context(),
        )
        await smtp.send(invoice_email())
        await smtp.aclose()
    [received] = sink.received
    assert received.encrypted
    assert received.login == "kabinet"


async def test_an_unknown_mailbox_is_a_permanent_failure_and_the_session_goes_on() -> None:
    async with mail_sink() as sink:
        smtp = channel(sink.port, connections=1)
        with pytest.raises(PermanentFailure) as refused:
            await smtp.send(invoice_email("nobody@example.ru"))
        await smtp.send(invoice_email())
        await smtp.aclose()
    assert refused.value.reason == "RECIPIENT_REFUSED_550"
    assert [r.rcpt_tos for r in sink.received] == [["ivanova@example.ru"]]
    assert sink.sessions == 1


async def test_a_malformed_address_is_refused_before_any_connection() -> None:
    with pytest.raises(PermanentFailure) as refused:
        await channel(1).send(invoice_email("not an address\r\nBcc: x@y.z"))
    assert refused.value.reason == "BAD_ADDRESS"


async def test_a_wrong_password_and_a_dead_server_are_temporary() -> None:
    async with mail_sink(credentials=CREDENTIALS) as sink:
        with pytest.raises(TemporaryFailure) as auth:
            await channel(sink.port, username="kabinet", password="wrong").send(invoice_email())
    assert auth.value.reason == "AUTH_FAILED"
    assert sink.received == []

    with free_socket() as unused:
        port = unused.getsockname()[1]
    with pytest.raises(TemporaryFailure) as down:
        await channel(port, timeout=2).send(invoice_email())
    assert down.value.reason == "UNREACHABLE"


async def test_a_line_break_in_the_subject_starts_no_header() -> None:
    async with mail_sink() as sink:
        smtp = channel(sink.port)
        message = invoice_email()
        await smtp.send(
            OutgoingMessage(
                channel=message.channel,
                to=message.to,
                subject="Invoice\r\nBcc: someone@example.com",
                text="hello",
                idempotency_key="n-3\r\nX-Other: 1",
            )
        )
        await smtp.aclose()
    [received] = sink.received
    assert received.rcpt_tos == ["ivanova@example.ru"]
    assert received.message["Subject"] == "Invoice Bcc: someone@example.com"
    assert received.message["Bcc"] is None
    assert received.message["X-Other"] is None


async def test_a_session_the_server_closed_is_reopened_for_the_next_message() -> None:
    async with mail_sink(credentials=CREDENTIALS) as sink:
        smtp = channel(sink.port, username=CREDENTIALS[0], password=CREDENTIALS[1])
        await smtp.send(invoice_email(key="n-1"))
        sink.drop_sessions()
        await smtp.send(invoice_email(key="n-2"))
        await smtp.aclose()
    assert [r.message["X-Kabinet-Notification"] for r in sink.received] == ["n-1", "n-2"]
    assert [r.login for r in sink.received] == ["kabinet", "kabinet"]
    assert sink.sessions == 2
