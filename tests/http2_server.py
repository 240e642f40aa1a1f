"""An ASGI app served over TLS with HTTP/2 (hypercorn: ALPN h2), in a thread, for the
sandboxes of services that speak only HTTP/2, as APNs does."""

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config
from starlette.types import ASGIApp

from tests.tls import Certificate


@contextlib.contextmanager
def serve_http2(app: ASGIApp, sock: socket.socket, certificate: Certificate) -> Iterator[str]:
    """Serves `app` on `sock` (which it takes over) until the block ends; yields its
    https:// base URL."""
    port = sock.getsockname()[1]
    config = Config()
    # Listening already, so a client that connects before the server's loop runs waits in
    # the backlog; the server owns the descriptor from here and closes it.
    sock.listen()
    config.bind = [f"fd://{sock.detach()}"]
    config.certfile, config.keyfile = str(certificate.cert_file), str(certificate.key_file)
    config.alpn_protocols = ["h2"]
    config.loglevel = "WARNING"
    config.accesslog = None
    started = threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def main() -> None:
        loop.call_soon(started.set)
        await hypercorn_serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("the HTTP/2 test server did not start")
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()
