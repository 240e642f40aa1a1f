"""uvicorn's WebSocket protocol, lighter per socket and writable by live feeds directly.

A socket lives for hours and a process holds thousands: once the upgrade is answered, the
parsed handshake request and response are dropped (the ASGI scope keeps what the app
reads). And a feed writes the same `next` body to many sockets at once: the protocol offers
itself in the scope (`FRAMES`) so a frame goes to the transport in the feed's own step,
without an ASGI send (a task switch and a wait) per socket.
"""

import struct
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

# The scope extension under which a socket's frames can be written directly.
FRAMES = "kabinet.frames"


class LiveWebSocketProtocol(WebSocketsSansIOProtocol):
    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        del self.request  # read into the scope by now
        if self.handshake_initiated and not self.handshake_complete:
            self.scope["extensions"][FRAMES] = self

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept":
            self.response = None  # the handshake's answer went out

    def ready(self) -> bool:
        """Whether a frame can be written now: open, and the transport not backed up."""
        return (
            self.handshake_complete
            and self.response is None
            and not self.close_sent
            and not self.disconnected
            and self.writable.is_set()
        )

    def write_text(self, data: bytes) -> None:
        """Writes one text frame (UTF-8 `data`); only when `ready()`. Framed here: a
        server's frame is unmasked and, without extensions (no per-message deflate), its
        header only says text and the length."""
        conn = self.conn
        if conn.state is not State.OPEN or conn.expect_continuation_frame or conn.extensions:
            return  # closing (what is left is the close handshake's), or not a plain socket
        self.transport.write(_text_header(len(data)) + data)


def _text_header(length: int) -> bytes:
    """RFC 6455 5.2: FIN and the text opcode, then the payload length, unmasked."""
    if length < 126:
        return struct.pack("!BB", 0x81, length)
    if length < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, length)
    return struct.pack("!BBQ", 0x81, 127, length)


# How uvicorn serves Kabinet's websockets (`kabinet serve` and the tests' servers alike).
# Live events are small JSON messages: per-message deflate would save little and costs
# ~50 KiB of zlib state per socket.
UVICORN_WEBSOCKETS: dict[str, Any] = {
    "ws": LiveWebSocketProtocol,
    "ws_per_message_deflate": False,
}
