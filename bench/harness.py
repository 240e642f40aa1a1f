"""What the benches share: a fresh database, a free port, a server's readiness, its CPU time.

The benches are scripts (`.venv/bin/python bench/<name>.py`); each puts the repository on
`sys.path` first, as it imports `tests.kafka` and this module from there.
"""

import asyncio
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import httpx

from migrations import upgrade

HOST = "127.0.0.1"
ADMIN_URL = os.environ.get("KABINET_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def database_url(name: str) -> str:
    """The SQLAlchemy URL of database `name` on the benches' PostgreSQL server."""
    server = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{server}/{name}"


async def fresh_database(name: str) -> str:
    """Drops and creates `name`, migrated to head; returns its URL."""
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = database_url(name)
    await asyncio.to_thread(upgrade, url)
    return url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


READY_SECONDS = 60.0


async def wait_ready(base: str, exited: Callable[[], bool]) -> None:
    """Until `base`'s /health/ready answers 200; stops if the server process `exited`."""
    deadline = time.monotonic() + READY_SECONDS
    async with httpx.AsyncClient(base_url=base) as http:
        while time.monotonic() < deadline:
            if exited():
                raise SystemExit(f"the server at {base} exited")
            try:
                if (await http.get("/health/ready")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit(f"the server at {base} did not start")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (Linux /proc; NaN elsewhere)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
