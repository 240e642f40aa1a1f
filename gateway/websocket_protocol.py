"""uvicorn's WebSocket protocol, lighter per socket and writable by live feeds directly.

A socket lives for hours and a process holds thousands: once the upgrade is answered, the
parsed handshake request and response are dropped (the ASGI scope keeps what the app
reads). And a feed writes the same `next` body to many sockets at once: the protocol offers
itself in the scope (`FRAMES`) so a frame goes to the transport in the feed's own step,
without an ASGI send (a task switch and a wait) per socket.
"""

import asyncio
import struct
from collections import deque
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import Protocol, State

# The scope extension under which a socket's frames can be written directly.
FRAMES = "kabinet.frames"


class _Received:
    """What the socket received for the app: uvicorn's asyncio.Queue in a fraction of its
    memory (a deque and the one reader's waiter; ASGI has one receiver)."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()


class LiveWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Received()  # type: ignore[assignment]
        # What writes to the socket directly, to run once its transport drains.
        self.resumed: dict[object, Callable[[], None]] = {}

    def resume_writing(self) -> None:
        super().resume_writing()
        for flush in list(self.resumed.values()):
            flush()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.resumed.clear()

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        del self.request  # read into the scope by now
        if self.handshake_initiated and not self.handshake_complete:
            self.scope["extensions"][FRAMES] = self

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept":
            self.response = None  # the handshake's answer went out
            conn = self.conn
            if not conn.reader.buffer:
                # websockets' parser keeps the parsed request in its frame for good; the
                # client sends no frame before it has the answer, so a frame parser of its
                # own takes over with nothing lost.
                conn.parser = Protocol.parse(conn)
                next(conn.parser)

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
