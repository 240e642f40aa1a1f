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

import httpx

from domains.identity.tokens import generate_signing_key
from migrations import upgrade

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import cpu_seconds, free_port, fresh_database, wait_ready

NAME = "kabinet_bench_idle"
REPO = Path(__file__).resolve().parent.parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds watched")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after start-up")
    parser.add_argument("--sqlite", action="store_true", help="the embedded SQLite mode")
    return parser.parse_args()


async def statements(http: httpx.AsyncClient) -> float:
    response = await http.get("/metrics")
    response.raise_for_status()
    for line in response.text.splitlines():
        if line.startswith("kabinet_db_statements_total "):
            return float(line.split()[1])
    raise SystemExit("/metrics has no kabinet_db_statements_total")


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
            await wait_ready(str(http.base_url), lambda: server.returncode is not None)
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
        await watch(await fresh_database(NAME), args)
        return
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite+aiosqlite:///{scratch}/idle.db"
        await asyncio.to_thread(upgrade, url)
        await watch(url, args)


if __name__ == "__main__":
    asyncio.run(main())
