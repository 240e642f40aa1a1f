"""The payments floor: a balance payment's transaction sent by plain asyncpg, no framework.

What `pay_invoice` does for a balance payment of an invoice, statement for statement, with
nothing between the driver and the rules: lock the customer, claim the idempotency key,
lock the invoice, read its payments, check what is due and the balance, insert the payment
(RETURNING its row), bind the key, insert the movement's two entries in one statement,
move the cached balance, mark the invoice paid when this pays it off, and insert the
events (with their NOTIFY) in one statement; a refused payment rolls back. Each of
`concurrency` connections pays its share in turn. The rows are the ones the domain action
writes, so `reconcile` judges them too. Used by `bench/payments.py`.
"""

import asyncio
import hashlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg

LOCK_CUSTOMER = "SELECT id, balance, currency FROM customers WHERE id = $1 FOR UPDATE"
CLAIM_KEY = """
INSERT INTO idempotency_keys (customer_id, key, fingerprint, payment_id, created_at, expires_at)
VALUES ($1, $2, $3, NULL, $4, $5)
ON CONFLICT (customer_id, key) DO UPDATE SET fingerprint = excluded.fingerprint,
    payment_id = excluded.payment_id, created_at = excluded.created_at,
    expires_at = excluded.expires_at
WHERE idempotency_keys.expires_at <= $4
"""
LOCK_INVOICE = """
SELECT id, customer_id, number, amount, currency, status FROM invoices WHERE id = $1 FOR UPDATE
"""
INVOICE_PAYMENTS = """
SELECT amount, refunded_amount, status FROM payments WHERE invoice_id = ANY($1::bigint[])
ORDER BY created_at, id
"""
INSERT_PAYMENT = """
INSERT INTO payments (invoice_id, customer_id, amount, currency, method, status,
    refunded_amount, created_at, provider)
VALUES ($1, $2, $3, $4, 'balance', 'succeeded', 0, $5, NULL)
RETURNING id, invoice_id, customer_id, amount, currency, method, status, refunded_amount,
    created_at, confirmation_url
"""
BIND_KEY = "UPDATE idempotency_keys SET payment_id = $1 WHERE customer_id = $2 AND key = $3"
INSERT_ENTRIES = """
INSERT INTO transactions (movement_id, customer_id, invoice_id, payment_id, account, type,
    amount, currency, created_at)
SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::varchar[],
    $6::varchar[], $7::numeric[], $8::varchar[], $9::timestamptz[])
"""
MOVE_BALANCE = "UPDATE customers SET balance = balance + $1 WHERE id = $2"
MARK_PAID = "UPDATE invoices SET status = 'paid' WHERE id = $1"
INSERT_EVENTS = """
WITH inserted AS (
    INSERT INTO outbox (id, type, subject, occurred_at, payload)
    SELECT * FROM unnest($1::uuid[], $2::varchar[], $3::varchar[], $4::timestamptz[],
        $5::jsonb[])
)
SELECT pg_notify('kabinet_outbox', '')
"""
PAYABLE = ("issued", "overdue")
SETTLED = ("succeeded", "refunded")
KEY_TTL = timedelta(hours=24)


class Refused(Exception):
    """The rules refuse the payment: its transaction rolls back."""


async def pay(conn: asyncpg.Connection, customer_id: int, invoice_id: int, amount: Decimal) -> None:
    key = str(uuid.uuid4())
    request = {"amount": str(amount), "invoice_id": invoice_id, "method": "balance"}
    fingerprint = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
    async with conn.transaction():
        now = datetime.now(UTC)
        customer = await conn.fetchrow(LOCK_CUSTOMER, customer_id)
        await conn.execute(CLAIM_KEY, customer_id, key, fingerprint, now, now + KEY_TTL)
        invoice = await conn.fetchrow(LOCK_INVOICE, invoice_id)
        if invoice["status"] not in PAYABLE or invoice["currency"] != customer["currency"]:
            raise Refused("INVOICE_NOT_PAYABLE")
        kept = sum(
            (
                p["amount"] - p["refunded_amount"]
                for p in await conn.fetch(INVOICE_PAYMENTS, [invoice_id])
                if p["status"] in SETTLED
            ),
            Decimal("0.00"),
        )
        due = invoice["amount"] - kept
        if amount > due:
            raise Refused("INVALID_AMOUNT")
        if customer["balance"] < amount:
            raise Refused("INSUFFICIENT_FUNDS")
        currency = invoice["currency"]
        payment = await conn.fetchrow(
            INSERT_PAYMENT, invoice_id, customer_id, amount, currency, now
        )
        payment_id = payment["id"]
        await conn.execute(BIND_KEY, payment_id, customer_id, key)
        movement = uuid.uuid4()
        await conn.execute(
            INSERT_ENTRIES,
            [movement, movement],
            [customer_id, customer_id],
            [None, invoice_id],
            [payment_id, payment_id],
            ["customer_balance", "receivable"],
            ["debit", "credit"],
            [amount, amount],
            [currency, currency],
            [now, now],
        )
        await conn.execute(MOVE_BALANCE, -amount, customer_id)
        subject = f"customer:{customer_id}"
        common = {"version": 1, "customer_id": customer_id}
        events = [
            (
                "payment.created",
                common
                | {
                    "payment_id": payment_id,
                    "invoice_id": invoice_id,
                    "amount": str(amount),
                    "currency": currency,
                    "method": "balance",
                    "status": "succeeded",
                },
            ),
            (
                "balance.changed",
                common
                | {
                    "balance": str(customer["balance"] - amount),
                    "delta": str(-amount),
                    "currency": currency,
                    "reason": "payment",
                },
            ),
        ]
        if amount == due:
            await conn.execute(MARK_PAID, invoice_id)
            events.append(
                (
                    "invoice.paid",
                    common
                    | {
                        "invoice_id": invoice_id,
                        "number": invoice["number"],
                        "amount": str(invoice["amount"]),
                        "currency": currency,
                    },
                )
            )
        times = [now + timedelta(microseconds=n) for n in range(len(events))]
        await conn.execute(
            INSERT_EVENTS,
            [uuid.uuid4() for _ in events],
            [type for type, _ in events],
            [subject] * len(events),
            times,
            [json.dumps(payload) for _, payload in events],
        )


async def floor(
    dsn: str, plan: list[tuple[int, int]], amount: Decimal, concurrency: int
) -> tuple[Counter[str], float, float]:
    """Pays `plan` ((customer, invoice) pairs) on `concurrency` connections: the outcomes,
    the seconds it took and this process's CPU seconds."""
    outcomes: Counter[str] = Counter()
    work: Iterator[tuple[int, int]] = iter(plan)
    connections = [await asyncpg.connect(dsn) for _ in range(concurrency)]

    async def paying(conn: asyncpg.Connection) -> None:
        for customer_id, invoice_id in work:
            try:
                await pay(conn, customer_id, invoice_id, amount)
                outcomes["paid"] += 1
            except Refused as refused:
                outcomes[str(refused)] += 1

    try:
        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(paying(conn) for conn in connections))
        return outcomes, time.perf_counter() - started, time.process_time() - cpu
    finally:
        for conn in connections:
            await conn.close()
