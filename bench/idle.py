"""Idle cost: what an API process that serves nobody spends, in SQL and in CPU.

Creates the PostgreSQL database `kabinet_bench_idle` (drops it first) and migrates it (or,
with `--sqlite`, a migrated SQLite file in a temporary directory), starts one `kabinet
serve` process without Kafka or Redis, so the worker (outbox relay, consumers,
housekeeping) runs inside it, waits `--settle` seconds for start-up to pass, then watches
it for `--duration` seconds without sending it a request other than two reads of
/metrics. Prints SQL statements per second (`kabinet_db_statements_total`) and the
process's CPU milliseconds per second (user + system, from /proc/<pid>/stat). Figures
only: nothing asserts them.

    .venv/bin/python bench/idle.py [--duration 30] [--settle 5] [--sqlite]
"""

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx

from domains.identity.tokens import generate_signing_key
from migrations import upgrade

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.kafka import free_port

ADMIN_URL = os.environ.get("KABINET_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
NAME = "kabinet_bench_idle"
PG_URL = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{NAME}"
REPO = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds watched")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after start-up")
    parser.add_argument("--sqlite", action="store_true", help="the embedded SQLite mode")
    return parser.parse_args()


async def fresh_database() -> str:
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{NAME}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{NAME}"')
    finally:
        await admin.close()
    await asyncio.to_thread(upgrade, PG_URL)
    return PG_URL


def cpu_seconds(pid: int) -> float:
    """User plus system time of the process (fields 14 and 15 of /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def statements(http: httpx.AsyncClient) -> float:
    response = await http.get("/metrics")
    response.raise_for_status()
    for line in response.text.splitlines():
        if line.startswith("kabinet_db_statements_total "):
            return float(line.split()[1])
    raise SystemExit("/metrics has no kabinet_db_statements_total")


async def wait_ready(http: httpx.AsyncClient, server: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.returncode is not None:
            raise SystemExit("kabinet serve exited")
        try:
            if (await http.get("/health/ready")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit("kabinet serve did not start")


async def watch(url: str, args: argparse.Namespace) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KABINET_")}
    env |= {
        "KABINET_LOG_LEVEL": "warning",
        "KABINET_DATABASE_URL": url,
        "KABINET_JWT_PRIVATE_KEY": generate_signing_key().decode(),
        "KABINET_PORT": str(port),
    }
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "serve", env=env, cwd=REPO
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            await wait_ready(http, server)
            await asyncio.sleep(args.settle)
            sql_before, cpu_before = await statements(http), cpu_seconds(server.pid)
            started = time.monotonic()
            await asyncio.sleep(args.duration)
            elapsed = time.monotonic() - started
            sql_after, cpu_after = await statements(http), cpu_seconds(server.pid)
    finally:
        if server.returncode is None:
            server.terminate()
        await asyncio.wait_for(server.wait(), 30)
    print(f"idle kabinet serve ({'SQLite' if args.sqlite else 'PostgreSQL'}, no Kafka, worker in")
    print(f"process), {elapsed:.1f} s after a {args.settle:.0f} s settle:")
    print(f"  SQL statements/s  {(sql_after - sql_before) / elapsed:8.2f}")
    print(f"  CPU ms/s          {(cpu_after - cpu_before) * 1000 / elapsed:8.2f}")


async def main() -> None:
    args = parse_args()
    if not args.sqlite:
        await watch(await fresh_database(), args)
        return
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite+aiosqlite:///{scratch}/idle.db"
        await asyncio.to_thread(upgrade, url)
        await watch(url, args)


if __name__ == "__main__":
    asyncio.run(main())
