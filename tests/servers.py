"""Real HTTP servers for the tests, on free ports: an ASGI app under uvicorn in a thread,
or `kabinet serve` in its own process."""

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp

from gateway.websocket_protocol import UVICORN_WEBSOCKETS

REPO_ROOT = Path(__file__).resolve().parent.parent
STARTUP_SECONDS = 30.0
# Limits a test server must not hit: its traffic is the test's, not an attacker's.
NO_LIMIT = "1000000"


def free_socket(send_buffer: int | None = None) -> socket.socket:
    """A listening socket on a free port; `send_buffer` caps the kernel's send buffer of
    every connection accepted on it (they inherit it), so a client that stops reading
    pushes back on the server after little data."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if send_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    sock.bind(("127.0.0.1", 0))
    return sock


def url_of(sock: socket.socket) -> str:
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextlib.contextmanager
def serve(app: ASGIApp, sock: socket.socket) -> Iterator[str]:
    """Serves `app` on `sock` until the block ends; yields its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", **UVICORN_WEBSOCKETS)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


class ServerProcess:
    """`kabinet serve [ARGS]` in its own process on a free port, with `settings` (lower-case
    names of KABINET_* variables) over the test defaults; killed or terminated by its own pid."""

    def __init__(
        self, database_url: str, signing_key: bytes, log_path: Path, *args: str, **settings: str
    ) -> None:
        with free_socket() as sock:
            self.port = sock.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        env = {key: value for key, value in os.environ.items() if not key.startswith("KABINET_")}
        env |= {
            "KABINET_DATABASE_URL": database_url,
            "KABINET_JWT_PRIVATE_KEY": signing_key.decode(),
            "KABINET_HOST": "127.0.0.1",
            "KABINET_PORT": str(self.port),
            "KABINET_LOG_LEVEL": "warning",
            "KABINET_LOGIN_ATTEMPTS_PER_ACCOUNT": NO_LIMIT,
            "KABINET_LOGIN_ATTEMPTS_PER_ACCOUNT_AND_IP": NO_LIMIT,
            "KABINET_LOGIN_ATTEMPTS_PER_IP": NO_LIMIT,
            "KABINET_MUTATIONS_PER_USER_PER_MINUTE": NO_LIMIT,
            "KABINET_MUTATIONS_PER_IP_PER_MINUTE": NO_LIMIT,
            "KABINET_QUERY_COST_PER_USER_PER_MINUTE": NO_LIMIT,
            "KABINET_QUERY_COST_PER_IP_PER_MINUTE": NO_LIMIT,
            "KABINET_GRAPHQL_EXECUTION": "checked",  # as make_settings: both paths compared
        }
        env |= {f"KABINET_{name.upper()}": value for name, value in settings.items()}
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own CLI
                [sys.executable, "-m", "gateway.cli", "serve", *args],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def wait_until_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        async with httpx.AsyncClient(timeout=1) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    pytest.fail(
                        f"server exited with {self.process.returncode}:\n"
                        f"{self.log_path.read_text()}"
                    )
                try:
                    if (await client.get(f"{self.base}/health/ready")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        pytest.fail(f"server not ready after {STARTUP_SECONDS}s:\n{self.log_path.read_text()}")

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
