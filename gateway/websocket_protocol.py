"""uvicorn's WebSocket protocol, lighter per socket and writable by live feeds directly.

A socket lives for hours and a process holds thousands: once the upgrade is answered, the
parsed handshake request and response are dropped (the ASGI scope keeps what the app
reads). And a feed writes the same `next` body to many sockets at once: the protocol offers
itself in the scope (`FRAMES`) so a frame goes to the transport in the feed's own step,
without an ASGI send (a task switch and a wait) per socket.
"""

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState

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
        """Writes one text frame (UTF-8 `data`); only when `ready()`."""
        try:
            self.conn.send_text(data)
        except InvalidState:  # closing: what is left is the close handshake's
            return
        self.transport.write(b"".join(self.conn.data_to_send()))


# How uvicorn serves Kabinet's websockets (`kabinet serve` and the tests' servers alike).
# Live events are small JSON messages: per-message deflate would save little and costs
# ~50 KiB of zlib state per socket.
UVICORN_WEBSOCKETS: dict[str, Any] = {
    "ws": LiveWebSocketProtocol,
    "ws_per_message_deflate": False,
}
