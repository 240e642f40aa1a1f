"""A real SMTP server (aiosmtpd) on the test's own loop, keeping every message it accepts;
it refuses mailboxes named `nobody@...`, as a server refuses an unknown one."""

import asyncio
import contextlib
import ssl
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from functools import cached_property

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.servers import free_socket


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    # Who signed in on the session that sent it (None: no AUTH).
    login: str | None
    # Whether the session was upgraded with STARTTLS before the message.
    encrypted: bool

    @cached_property
    def message(self) -> EmailMessage:
        """Parsed when a test looks: parsing costs more than receiving (the bench's sink)."""
        return message_from_bytes(self.raw, policy=policy.default)  # type: ignore[return-value]


@dataclass
class MailSink:
    port: int
    received: list[Received] = field(default_factory=list)
    sessions: int = 0
    _open: list[SMTP] = field(default_factory=list)

    def drop_sessions(self) -> None:
        """Closes every session from the server's side, as an idle timeout does."""
        for session in self._open:
            if session.transport is not None:
                session.transport.close()
        self._open.clear()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        if address.startswith("nobody@"):
            return f"550 5.1.1 <{address}>: mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        login = session.auth_data.login.decode() if session.authenticated else None
        self.received.append(
            Received(
                mail_from=envelope.mail_from or "",
                rcpt_tos=list(envelope.rcpt_tos),
                raw=envelope.original_content or b"",
                login=login,
                encrypted=session.ssl is not None,
            )
        )
        return "250 2.0.0 Ok: queued"


@contextlib.asynccontextmanager
async def mail_sink(
    *,
    credentials: tuple[str, str] | None = None,
    tls_context: ssl.SSLContext | None = None,
) -> AsyncIterator[MailSink]:
    """Serves SMTP on a free port until the block ends. With `credentials`, AUTH is
    required (PLAIN/LOGIN); with `tls_context`, STARTTLS is offered and required."""
    sock = free_socket()
    sink = MailSink(sock.getsockname()[1])

    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: object
    ) -> AuthResult:
        ok = (
            credentials is not None
            and isinstance(auth_data, LoginPassword)
            and (auth_data.login.decode(), auth_data.password.decode()) == credentials
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    def session() -> SMTP:
        sink.sessions += 1
        with warnings.catch_warnings():
            # AUTH in clear is what the tests without a certificate mean to test.
            warnings.simplefilter("ignore", UserWarning)
            server = SMTP(
                sink,
                hostname="sink.test",
                authenticator=authenticate if credentials else None,
                auth_required=credentials is not None,
                auth_require_tls=tls_context is not None,
                tls_context=tls_context,
                require_starttls=tls_context is not None,
            )
        sink._open.append(server)
        return server

    server = await asyncio.get_running_loop().create_server(session, sock=sock)
    try:
        yield sink
    finally:
        server.close()
        await server.wait_closed()
