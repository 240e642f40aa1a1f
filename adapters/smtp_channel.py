"""Email over SMTP (aiosmtplib): a text and an HTML part, over a few reused connections.

Opening an SMTP session costs a TCP (and TLS) handshake, EHLO and AUTH: several round
trips per message if each opened its own. The channel keeps up to `connections` sessions
open and lends one per message, so throughput is bounded by the server's answers, not
by handshakes. A session the server closed while idle is reopened once, transparently.

The provider's message id is the `Message-ID` we set: bounces and DSNs name it. The
message (a text part, or text and HTML as multipart/alternative, each base64 UTF-8) is
written out directly: the email package's classes cost a few milliseconds a message,
more than the SMTP exchange itself, which would cap a worker far below its target.
"""

import asyncio
import base64
import secrets
import ssl
from dataclasses import dataclass
from email.header import Header
from email.utils import format_datetime, formataddr, make_msgid, parseaddr

import aiosmtplib

from domains.clock import Clock
from domains.notifications.channel import (
    OutgoingMessage,
    PermanentFailure,
    Sent,
    TemporaryFailure,
)

PROVIDER = "smtp"
CRLF = "\r\n"


@dataclass(frozen=True, slots=True)
class _Email:
    recipient: str
    message_id: str
    data: bytes


class SmtpChannel:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        clock: Clock,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        tls: bool = False,
        tls_context: ssl.SSLContext | None = None,
        timeout: float = 10.0,
        connections: int = 4,
    ) -> None:
        self._options = {
            "hostname": host,
            "port": port,
            "username": username,
            "password": password,
            "use_tls": tls,
            # False, not None: None would upgrade whenever the server offers it, and a
            # missing offer would then silently send in clear.
            "start_tls": starttls,
            "tls_context": tls_context,
            "timeout": timeout,
        }
        name, self._envelope_sender = parseaddr(sender)
        self._from_header = formataddr((name, self._envelope_sender), charset="utf-8")
        self._domain = self._envelope_sender.rpartition("@")[2] or "localhost"
        self._clock = clock
        self._idle: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
        self._slots = asyncio.Semaphore(connections)

    async def send(self, message: OutgoingMessage) -> Sent:
        email = self._email(message)
        async with self._slots:
            smtp = (
                self._idle.get_nowait()
                if not self._idle.empty()
                else aiosmtplib.SMTP(**self._options)
            )
            try:
                await self._deliver(smtp, email)
            except asyncio.CancelledError:
                smtp.close()  # cut mid-command: the session's state is unknown
                raise
            finally:
                # A refused message leaves the session reset (RSET) and usable.
                if smtp.is_connected:
                    self._idle.put_nowait(smtp)
        return Sent(PROVIDER, email.message_id)

    async def aclose(self) -> None:
        while not self._idle.empty():
            smtp = self._idle.get_nowait()
            try:
                await smtp.quit()
            except aiosmtplib.SMTPException:
                smtp.close()

    async def _deliver(self, smtp: aiosmtplib.SMTP, email: _Email) -> None:
        try:
            for attempt in range(2):
                if not smtp.is_connected:
                    await smtp.connect()
                try:
                    await smtp.sendmail(self._envelope_sender, [email.recipient], email.data)
                    return
                except aiosmtplib.SMTPServerDisconnected:
                    # An idle session the server timed out: reopen it once.
                    if attempt:
                        raise
                    smtp.close()
        except aiosmtplib.SMTPRecipientsRefused as error:
            refused = error.recipients[0]
            raise _failure(refused.code, refused.message, "RECIPIENT_REFUSED") from error
        except aiosmtplib.SMTPAuthenticationError as error:
            smtp.close()
            # Our credentials, not the message: kept for a retry once they are fixed.
            raise TemporaryFailure(PROVIDER, "AUTH_FAILED", error.message) from error
        except aiosmtplib.SMTPResponseException as error:
            raise _failure(error.code, error.message, "REFUSED") from error
        except (aiosmtplib.SMTPException, OSError) as error:
            smtp.close()
            raise TemporaryFailure(PROVIDER, "UNREACHABLE", str(error)) from error

    def _email(self, message: OutgoingMessage) -> _Email:
        recipient = _mailbox(message.to)
        message_id = make_msgid(domain=self._domain)
        # One line whatever the template gave: a line break in a header would start another.
        subject = " ".join(message.subject.split())
        headers = [
            f"From: {self._from_header}",
            f"To: {recipient}",
            "Subject: "
            + Header(subject, None if subject.isascii() else "utf-8", header_name="Subject").encode(
                linesep=CRLF
            ),
            f"Date: {format_datetime(self._clock.now())}",
            f"Message-ID: {message_id}",
            # Lets a sink or a mailbox tell a resent notification from a new one.
            f"X-Kabinet-Notification: {_printable(message.idempotency_key)}",
            "MIME-Version: 1.0",
        ]
        # The entity's own headers follow ours: a text part's, or the multipart's.
        if message.html is None:
            entity = _part("plain", message.text)
        else:
            boundary = f"=_kabinet_{secrets.token_hex(12)}"
            entity = (
                f'Content-Type: multipart/alternative; boundary="{boundary}"{CRLF}{CRLF}'
                f"--{boundary}{CRLF}{_part('plain', message.text)}{CRLF}"
                f"--{boundary}{CRLF}{_part('html', message.html)}{CRLF}"
                f"--{boundary}--{CRLF}"
            )
        data = (CRLF.join(headers) + CRLF + entity).encode()
        return _Email(recipient, message_id, data)


def _part(subtype: str, text: str) -> str:
    """A text part's headers and body, base64 (UTF-8 text of any script, lines of 76)."""
    encoded = base64.encodebytes(text.encode()).decode().replace("\n", CRLF)
    return (
        f"Content-Type: text/{subtype}; charset=utf-8{CRLF}"
        f"Content-Transfer-Encoding: base64{CRLF}{CRLF}{encoded}"
    )


def _printable(value: str) -> str:
    return "".join(char for char in value if char.isprintable())


def _mailbox(address: str) -> str:
    """The address alone, or PermanentFailure: nothing else may reach the envelope or a
    header (no display name, no second address, no line break)."""
    _, parsed = parseaddr(address)
    local, at, domain = parsed.rpartition("@")
    if parsed != address or not (local and at and "." in domain) or len(address) > 254:
        raise PermanentFailure(PROVIDER, "BAD_ADDRESS", address)
    if any(char.isspace() or char in '<>,;"' for char in address):
        raise PermanentFailure(PROVIDER, "BAD_ADDRESS", address)
    return address


def _failure(code: int, text: str, reason: str) -> PermanentFailure | TemporaryFailure:
    """SMTP's own rule: 5xx is final, 4xx (greylisting, a full queue) is worth a retry."""
    if 500 <= code < 600:
        return PermanentFailure(PROVIDER, f"{reason}_{code}", text)
    return TemporaryFailure(PROVIDER, f"{reason}_{code}", text)
