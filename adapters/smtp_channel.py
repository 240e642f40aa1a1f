"""Email over SMTP (aiosmtplib): a text and an HTML part, over a few reused connections.

Opening an SMTP session costs a TCP (and TLS) handshake, EHLO and AUTH: several round
trips per message if each opened its own. The channel keeps up to `connections` sessions
open and lends one per message, so throughput is bounded by the server's answers, not
by handshakes. A session the server closed while idle is reopened once, transparently.

The provider's message id is the `Message-ID` we set: bounces and DSNs name it.
"""

import asyncio
import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import aiosmtplib

from domains.clock import Clock
from domains.notifications.channel import (
    OutgoingMessage,
    PermanentFailure,
    Sent,
    TemporaryFailure,
)

PROVIDER = "smtp"


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
        self._sender = sender
        self._domain = sender.rpartition("@")[2].rstrip(">") or "localhost"
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
        return Sent(PROVIDER, email["Message-ID"])

    async def aclose(self) -> None:
        while not self._idle.empty():
            smtp = self._idle.get_nowait()
            try:
                await smtp.quit()
            except aiosmtplib.SMTPException:
                smtp.close()

    async def _deliver(self, smtp: aiosmtplib.SMTP, email: EmailMessage) -> None:
        try:
            for attempt in range(2):
                if not smtp.is_connected:
                    await smtp.connect()
                try:
                    await smtp.send_message(email)
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

    def _email(self, message: OutgoingMessage) -> EmailMessage:
        email = EmailMessage()
        try:
            email["To"] = Address(addr_spec=message.to)
        except (ValueError, IndexError) as error:
            raise PermanentFailure(PROVIDER, "BAD_ADDRESS", message.to) from error
        email["From"] = self._sender
        email["Subject"] = message.subject
        email["Date"] = format_datetime(self._clock.now())
        email["Message-ID"] = make_msgid(domain=self._domain)
        # Lets a sink or a mailbox tell a resent notification from a new one.
        email["X-Kabinet-Notification"] = message.idempotency_key
        email.set_content(message.text)
        if message.html is not None:
            email.add_alternative(message.html, subtype="html")
        return email


def _failure(code: int, text: str, reason: str) -> PermanentFailure | TemporaryFailure:
    """SMTP's own rule: 5xx is final, 4xx (greylisting, a full queue) is worth a retry."""
    if 500 <= code < 600:
        return PermanentFailure(PROVIDER, f"{reason}_{code}", text)
    return TemporaryFailure(PROVIDER, f"{reason}_{code}", text)
