"""Payments benchmark: paying invoices from the balance on PostgreSQL, then `reconcile`.

Creates the PostgreSQL database `kabinet_bench_payments` (drops it first), migrates it and
loads bulk customers (`load_bulk`: half of them hold a balance, each has issued invoices),
then, in one run, side by side:

1. HTTP (left out with `--direct`): starts `kabinet serve` (one uvicorn worker, Redis for
   the limits, raised so the run cannot hit them) on a free port, signs in `--signed-in`
   customers that can pay, and for `--duration` seconds `--concurrency` clients fire
   `POST /billing/pay` (balance, 1.00, a fresh `Idempotency-Key` each) over httpx, each
   request as a random one of those customers. Prints payments/s, the failed requests (any
   answer but 201), p50/p99 latency, the answers by status and the server process's CPU ms
   per payment.
2. Direct: `--requests` payments through the domain action itself (no HTTP: the payment's
   transaction, its row locks, ledger and outbox writes), `--concurrency` at a time.
3. Floor: `--requests` payments as the same transaction's statements sent by plain asyncpg
   (`--concurrency` connections, no SQLAlchemy, no domain code): the same locks in the same
   order, the same checks, the same rows (payment, key, entries, balance, events and their
   NOTIFY). Direct over floor is what the unit of work costs.

Each of 2 and 3 prints payments/s and this process's CPU ms per payment; then the ratio,
and `reconcile` over everything the run wrote.

    .venv/bin/python bench/payments.py [--duration 15] [--concurrency 20] [--signed-in 100]
        [--requests 5000]
    .venv/bin/python bench/payments.py --direct [--requests 5000] [--concurrency 20]
"""

import argparse
import asyncio
import itertools
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path

import httpx
from sqlalchemy import select

from domains.billing.models import Invoice, InvoiceStatus, PaymentMethod
from domains.billing.pay_invoice import pay_invoice
from domains.billing.reconcile import reconcile
from domains.customers.models import Customer
from domains.database import Database
from domains.errors import DomainError
from domains.identity.models import Role, User
from domains.identity.tokens import generate_signing_key
from domains.identity.viewer import Viewer
from gateway.demo import load_bulk
from resolvers.relay import to_global_id

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import cpu_seconds, database_url, free_port, fresh_database, wait_ready
from bench.payment_floor import floor

NAME = "kabinet_bench_payments"
URL = database_url(NAME)
REDIS_URL = os.environ.get("KABINET_BENCH_REDIS", "redis://127.0.0.1:6379/0")
REPO = Path(__file__).resolve().parent.parent
PASSWORD = "kabinet-demo"  # noqa: S105 - load_bulk's documented password
UNLIMITED = 1_000_000_000


async def payable(db: Database) -> list[tuple[Viewer, int]]:
    stmt = (
        select(Customer.user_id, Customer.id, Invoice.id)
        .join(Invoice, Invoice.customer_id == Customer.id)
        .where(
            Customer.balance >= Decimal(10),
            Invoice.status.in_((InvoiceStatus.ISSUED, InvoiceStatus.OVERDUE)),
        )
        .order_by(Invoice.id)
    )
    async with db.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    return [
        (Viewer(user_id, Role.CUSTOMER, customer_id), invoice)
        for user_id, customer_id, invoice in rows
    ]


AMOUNT = Decimal("1.00")


def plan_of(targets: list[tuple[Viewer, int]], requests: int) -> list[tuple[Viewer, int]]:
    """`requests` payments over the targets, in a fixed shuffled order (as the HTTP clients
    pick at random): one customer's invoices are not paid back to back."""
    plan = list(itertools.islice(itertools.cycle(targets), requests))
    random.Random(1).shuffle(plan)
    return plan


async def direct(
    db: Database, targets: list[tuple[Viewer, int]], args: argparse.Namespace
) -> float:
    work = iter(plan_of(targets, args.requests))
    outcomes: Counter[str] = Counter()

    async def paying() -> None:
        for viewer, invoice_id in work:
            try:
                await pay_invoice(
                    db,
                    viewer,
                    invoice_id=invoice_id,
                    method=PaymentMethod.BALANCE,
                    amount=AMOUNT,
                    idempotency_key=str(uuid.uuid4()),
                )
                outcomes["paid"] += 1
            except DomainError as error:
                outcomes[error.code] += 1

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(paying() for _ in range(args.concurrency)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return report("direct", outcomes, elapsed, cpu, args)


async def plain_asyncpg(targets: list[tuple[Viewer, int]], args: argparse.Namespace) -> float:
    plan = [(viewer.customer_id, invoice) for viewer, invoice in plan_of(targets, args.requests)]
    dsn = URL.replace("postgresql+asyncpg://", "postgresql://", 1)
    outcomes, elapsed, cpu = await floor(dsn, plan, AMOUNT, args.concurrency)
    return report("floor (plain asyncpg)", outcomes, elapsed, cpu, args)


def report(
    name: str, outcomes: Counter[str], elapsed: float, cpu: float, args: argparse.Namespace
) -> float:
    rate = outcomes["paid"] / elapsed
    print(
        f"{name}, {args.requests} requests, concurrency {args.concurrency}: {elapsed:.2f} s, "
        f"{rate:.0f} payments/s, {cpu * 1000 / max(outcomes['paid'], 1):.2f} ms CPU per "
        f"payment (this process), outcomes {dict(outcomes)}"
    )
    return rate


def start_server(port: int) -> subprocess.Popen[bytes]:
    """`kabinet serve`, one worker, limits out of reach; KABINET_* of the caller left out."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("KABINET_")}
    env |= {
        "KABINET_LOG_LEVEL": "warning",
        "KABINET_DATABASE_URL": URL,
        "KABINET_REDIS_URL": REDIS_URL,
        "KABINET_JWT_PRIVATE_KEY": generate_signing_key().decode(),
        "KABINET_PORT": str(port),
        "KABINET_MUTATIONS_PER_USER_PER_MINUTE": str(UNLIMITED),
        "KABINET_MUTATIONS_PER_IP_PER_MINUTE": str(UNLIMITED),
        "KABINET_LOGIN_ATTEMPTS_PER_IP": str(UNLIMITED),
    }
    return subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve"], env=env, cwd=REPO)


async def emails(db: Database, user_ids: list[int]) -> dict[int, str]:
    async with db.connect() as conn:
        stmt = select(User.id, User.email).where(User.id.in_(user_ids))
        return dict((await conn.execute(stmt)).all())


async def over_http(
    db: Database, targets: list[tuple[Viewer, int]], args: argparse.Namespace
) -> None:
    by_customer: dict[int, list[int]] = {}
    users: dict[int, int] = {}
    for viewer, invoice in targets:
        by_customer.setdefault(viewer.customer_id, []).append(invoice)
        users[viewer.customer_id] = viewer.user_id
    chosen = list(by_customer)[: args.signed_in]
    addresses = await emails(db, [users[c] for c in chosen])
    port = free_port()
    server = start_server(port)
    limits = httpx.Limits(max_connections=args.concurrency)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30
        ) as http:
            await wait_ready(str(http.base_url), lambda: server.poll() is not None)
            tokens: dict[int, str] = {}
            for customer in chosen:
                response = await http.post(
                    "/auth/login", json={"email": addresses[users[customer]], "password": PASSWORD}
                )
                response.raise_for_status()
                tokens[customer] = response.json()["access_token"]
            print(f"{len(tokens)} customers signed in; firing for {args.duration} s")
            latencies: list[float] = []
            statuses: Counter[int] = Counter()
            stop = time.monotonic() + args.duration

            async def client() -> None:
                while time.monotonic() < stop:
                    customer = random.choice(chosen)
                    body = {
                        "invoice_id": to_global_id("Invoice", random.choice(by_customer[customer])),
                        "method": "balance",
                        "amount": "1.00",
                    }
                    headers = {
                        "Authorization": f"Bearer {tokens[customer]}",
                        "Idempotency-Key": str(uuid.uuid4()),
                    }
                    sent = time.perf_counter()
                    response = await http.post("/billing/pay", json=body, headers=headers)
                    latencies.append(time.perf_counter() - sent)
                    statuses[response.status_code] += 1

            started, cpu = time.perf_counter(), cpu_seconds(server.pid)
            await asyncio.gather(*(client() for _ in range(args.concurrency)))
            elapsed, cpu = time.perf_counter() - started, cpu_seconds(server.pid) - cpu
    finally:
        server.terminate()
        server.wait(10)
    quantiles = statistics.quantiles(latencies, n=100)
    # Each request pays with a fresh key, so any answer but 201 Created failed (a 503 is a
    # saturated server: no database connection within the pool timeout).
    failed = len(latencies) - statuses[201]
    print(
        f"HTTP, concurrency {args.concurrency}, {elapsed:.1f} s: {len(latencies)} requests, "
        f"{statuses[201] / elapsed:.0f} payments/s, {failed} failed, "
        f"p50 {quantiles[49] * 1000:.1f} ms, p99 {quantiles[98] * 1000:.1f} ms, "
        f"{cpu * 1000 / max(statuses[201], 1):.2f} ms server CPU per payment"
    )
    print("answers by status:", dict(statuses))


async def main(args: argparse.Namespace) -> None:
    await fresh_database(NAME)
    db = Database(URL, pool_size=args.concurrency)
    try:
        await load_bulk(db, customers=args.customers, invoices_per_customer=3)
        targets = await payable(db)
        print(f"{args.customers} customers loaded; {len(targets)} payable invoices with a balance")
        if not args.direct:
            await over_http(db, targets, args)
        domain = await direct(db, targets, args)
        plain = await plain_asyncpg(targets, args)
        print(f"direct / floor: {domain / plain:.0%}")
        problems = await reconcile(db)
        print("reconcile:", "OK" if not problems else f"{len(problems)} problem(s)")
        for problem in problems[:20]:
            print(" ", problem)
    finally:
        await db.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--direct", action="store_true", help="no HTTP: domain action and floor")
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--requests", type=int, default=5000, help="direct and floor: payments")
    parser.add_argument("--duration", type=float, default=15.0, help="HTTP: seconds of load")
    parser.add_argument("--signed-in", type=int, default=100, help="HTTP: customers paying")
    asyncio.run(main(parser.parse_args()))
