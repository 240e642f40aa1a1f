"""Overdue marking at scale: how fast the worker's pass marks issued invoices overdue.

Loads `--invoices` monthly invoices past their due date on PostgreSQL (set-based inserts,
one customer each; every tenth paid, so not marked), then times `mark_overdue_invoices`
marking the rest (a batch of 1,000 per transaction, an `invoice.overdue` event each) and a
second pass, which marks nothing. Prints the figures and the process's peak RSS.

    .venv/bin/python bench/invoice_overdue.py [--invoices 700000]
"""

import argparse
import asyncio
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import fresh_database
from domains.billing.invoice_overdue import mark_overdue_invoices
from domains.clock import ManualClock
from domains.database import Database

MOSCOW = ZoneInfo("Europe/Moscow")
# Invoices of February 2026, due on the 11th; marked on the 12th.
MARKED_AT = datetime(2026, 2, 12, 9, 0, tzinfo=UTC)

LOAD = (
    """INSERT INTO users (email, role, is_active, password_hash, created_at)
    SELECT 'o' || g || '@bench.test', 'customer', true, 'x', now()
    FROM generate_series(1, $1) AS g""",
    """INSERT INTO customers (user_id, contract_num, full_name, balance, currency, created_at)
    SELECT id, 'O-' || id, 'Bench ' || id, 0, 'RUB', now() FROM users""",
    """INSERT INTO invoices (customer_id, kind, number, period_start, period_end, amount,
        currency, status, issued_at, due_date, created_at)
    SELECT id, 'monthly', 'M202602-' || id, DATE '2026-02-01', DATE '2026-02-28', 590.00,
        'RUB', CASE WHEN id % 10 = 0 THEN 'paid' ELSE 'issued' END,
        TIMESTAMPTZ '2026-02-01 00:00+00', DATE '2026-02-11', now()
    FROM customers""",
    "ANALYZE users, customers, invoices",
)


async def main(invoices: int) -> None:
    url = await fresh_database("kabinet_overdue_bench")
    db = Database(url)
    try:
        async with db.engine.begin() as conn:
            raw = await conn.get_raw_connection()
            started = time.perf_counter()
            for statement in LOAD:
                if "$1" in statement:
                    await raw.driver_connection.execute(statement, invoices)
                else:
                    await raw.driver_connection.execute(statement)
        print(f"loaded {invoices} invoices in {time.perf_counter() - started:.1f} s")

        clock = ManualClock(MARKED_AT)
        started = time.perf_counter()
        marked = await mark_overdue_invoices(db, zone=MOSCOW, clock=clock)
        first = time.perf_counter() - started
        print(f"first pass: {marked} marked overdue in {first:.1f} s ({marked / first:,.0f}/s)")

        started = time.perf_counter()
        again = await mark_overdue_invoices(db, zone=MOSCOW, clock=clock)
        print(f"second pass: {again} marked in {time.perf_counter() - started:.3f} s")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS: {peak:.0f} MB")
    finally:
        await db.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=700_000)
    asyncio.run(main(parser.parse_args().invoices))
