"""Payments benchmark: `pay_invoice` from the balance on PostgreSQL, then `reconcile`.

Creates the PostgreSQL database `kabinet_bench_payments` (drops it first), migrates it and
loads bulk customers (`load_bulk`: half of them hold a balance, each has issued invoices).
Then runs `--requests` payments of 1.00 through the domain action directly (no HTTP: this
measures the payment's transaction, its row locks and ledger writes), `--concurrency` at
a time, spread over the customers that can pay, each with its own idempotency key.
Prints payments per second, the refusals by code, and the reconcile result.

    .venv/bin/python bench/payments.py [--customers 2000] [--requests 5000] [--concurrency 20]
"""

import argparse
import asyncio
import itertools
import time
import uuid
from collections import Counter
from decimal import Decimal

import asyncpg
from sqlalchemy import select

from domains.billing.models import Invoice, InvoiceStatus, PaymentMethod
from domains.billing.pay_invoice import pay_invoice
from domains.billing.reconcile import reconcile
from domains.customers.models import Customer
from domains.database import Database
from domains.demo import load_bulk
from domains.errors import DomainError
from domains.identity.models import Role
from domains.identity.viewer import Viewer
from migrations import upgrade

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
NAME = "kabinet_bench_payments"
URL = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{NAME}"


async def fresh_database() -> None:
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{NAME}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{NAME}"')
    finally:
        await admin.close()
    await asyncio.to_thread(upgrade, URL)


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
    async with db.read() as conn:
        rows = (await conn.execute(stmt)).all()
    return [
        (Viewer(user_id, Role.CUSTOMER, customer_id), invoice)
        for user_id, customer_id, invoice in rows
    ]


async def main(customers: int, requests: int, concurrency: int) -> None:
    await fresh_database()
    db = Database(URL, pool_size=concurrency)
    try:
        await load_bulk(db, customers=customers, invoices_per_customer=3)
        targets = await payable(db)
        print(f"{customers} customers loaded; {len(targets)} payable invoices with a balance")
        plan = list(itertools.islice(itertools.cycle(targets), requests))
        outcomes: Counter[str] = Counter()
        gate = asyncio.Semaphore(concurrency)

        async def one(viewer: Viewer, invoice_id: int) -> None:
            async with gate:
                try:
                    await pay_invoice(
                        db,
                        viewer,
                        invoice_id=invoice_id,
                        method=PaymentMethod.BALANCE,
                        amount=Decimal("1.00"),
                        idempotency_key=str(uuid.uuid4()),
                    )
                    outcomes["paid"] += 1
                except DomainError as error:
                    outcomes[error.code] += 1

        started = time.perf_counter()
        await asyncio.gather(*(one(viewer, invoice) for viewer, invoice in plan))
        elapsed = time.perf_counter() - started
        print(
            f"{requests} requests, concurrency {concurrency}: {elapsed:.2f} s, "
            f"{outcomes['paid'] / elapsed:.0f} payments/s, {requests / elapsed:.0f} requests/s"
        )
        print("outcomes:", dict(outcomes))
        problems = await reconcile(db)
        print("reconcile:", "OK" if not problems else f"{len(problems)} problem(s)")
        for problem in problems[:20]:
            print(" ", problem)
    finally:
        await db.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.customers, args.requests, args.concurrency))
