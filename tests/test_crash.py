"""SIGKILL of the real server in the middle of payments leaves each one whole or absent (issue 4).

The test runs `kabinet serve` as a subprocess on a throwaway PostgreSQL database, fires
many concurrent `POST /billing/pay` requests and kills the server with SIGKILL once some
have succeeded while others are still in flight. Then: the ledger reconciles, nothing is
half-written, every answered payment exists; a restarted server answers every key again
(replaying the applied ones, applying the rest) with exactly one payment per key.
"""

import asyncio
import os
import random
import secrets
import signal
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import insert, select

from domains.billing.invoice_issue import IssuedInvoice, post_issuance
from domains.billing.models import Invoice, InvoiceStatus
from domains.billing.reconcile import reconcile
from domains.clock import utcnow
from domains.customers.models import Customer
from domains.database import Database
from domains.identity.models import User
from gateway.demo import load_demo
from migrations import upgrade
from resolvers.relay import pk_of, to_global_id
from tests.conftest import DEMO_PASSWORD, scratch_database
from tests.servers import ServerProcess
from tests.test_payments import book_top_up

CUSTOMERS = 6
TOP_UP = Decimal("1000.00")
INVOICE_AMOUNT = Decimal("900.00")
CYCLES = 3
REQUESTS_PER_CYCLE = 120
RESEND_ATTEMPTS = 3


@dataclass
class PayRequest:
    token: str
    invoice_id: str
    amount: str
    key: str
    # The payment id of the first success answered (None: none received yet).
    payment_id: int | None = None
    outcomes: list[str] = field(default_factory=list)


async def _prepare(db: Database) -> list[tuple[str, int]]:
    """Demo data, then for a few demo customers a top-up and one large open invoice.

    Returns (email, invoice id) for each of them.
    """
    await load_demo(db, customers=CUSTOMERS + 2)
    now = utcnow()
    targets = []
    async with db.transaction() as session:
        rows = await session.execute(
            select(Customer.id, User.email)
            .join(User, User.id == Customer.user_id)
            .order_by(Customer.id)
            .limit(CUSTOMERS)
        )
        for customer_id, email in rows.all():
            await book_top_up(session, customer_id, TOP_UP, now)
            invoice_id = (
                await session.execute(
                    insert(Invoice)
                    .values(
                        customer_id=customer_id,
                        number=f"CRASH-{customer_id}",
                        period_start=now.date(),
                        period_end=now.date(),
                        amount=INVOICE_AMOUNT,
                        currency="RUB",
                        status=InvoiceStatus.ISSUED,
                        issued_at=now,
                        due_date=now.date(),
                        created_at=now,
                    )
                    .returning(Invoice.id)
                )
            ).scalar_one()
            await post_issuance(
                session, [IssuedInvoice(invoice_id, customer_id, INVOICE_AMOUNT, "RUB", now)]
            )
            targets.append((email, invoice_id))
    assert len(targets) == CUSTOMERS
    return targets


async def _send(client: httpx.AsyncClient, base: str, request: PayRequest) -> int | None:
    """The payment id of a success; None when the connection failed (the server died)."""
    try:
        response = await client.post(
            f"{base}/billing/pay",
            json={"invoice_id": request.invoice_id, "method": "balance", "amount": request.amount},
            headers={"Authorization": f"Bearer {request.token}", "Idempotency-Key": request.key},
        )
    except httpx.TransportError as error:
        request.outcomes.append(f"transport:{type(error).__name__}")
        return None
    request.outcomes.append(str(response.status_code))
    assert response.status_code in (200, 201), (request.key, response.status_code, response.text)
    body = response.json()
    assert Decimal(body["payment"]["amount"]["amount"]) == Decimal(request.amount), body
    return pk_of(body["payment"]["id"], "Payment")


async def _fire_and_kill(server: ServerProcess, requests: list[PayRequest], kill_after: int) -> int:
    """Sends all requests at once; SIGKILLs the server after `kill_after` successes.

    Returns how many requests were still unanswered when the kill landed.
    """
    succeeded = 0
    finished = 0
    killed = asyncio.Event()
    in_flight_at_kill = -1

    async def one(client: httpx.AsyncClient, request: PayRequest) -> None:
        nonlocal succeeded, finished, in_flight_at_kill
        payment_id = await _send(client, server.base, request)
        finished += 1
        if payment_id is not None:
            assert request.payment_id is None
            request.payment_id = payment_id
            succeeded += 1
            if succeeded >= kill_after and not killed.is_set():
                in_flight_at_kill = len(requests) - finished
                # SIGKILL at once, before this coroutine yields: other requests are mid-way.
                os.kill(server.process.pid, signal.SIGKILL)
                killed.set()

    limits = httpx.Limits(max_connections=48, max_keepalive_connections=48)
    async with httpx.AsyncClient(timeout=20, limits=limits) as client:
        await asyncio.gather(*(one(client, request) for request in requests))
    assert killed.is_set(), f"only {succeeded} of {len(requests)} succeeded; the kill never fired"
    server.kill()  # reaps it
    assert server.process.returncode == -signal.SIGKILL
    return in_flight_at_kill


async def _resend_all(server: ServerProcess, requests: list[PayRequest]) -> None:
    """Every request again, same key and body: a success naming the same payment.

    A transport error here (a kept-alive connection the server closed as it was reused)
    is retried with the same key, as any client would: the key makes that safe.
    """

    async def one(client: httpx.AsyncClient, request: PayRequest) -> int | None:
        for _ in range(RESEND_ATTEMPTS):
            payment_id = await _send(client, server.base, request)
            if payment_id is not None:
                return payment_id
            assert server.process.poll() is None, server.log_path.read_text()
        return None

    answered_before = {id(r): r.payment_id for r in requests}
    limits = httpx.Limits(max_connections=48, max_keepalive_connections=48)
    async with httpx.AsyncClient(timeout=20, limits=limits) as client:
        ids = await asyncio.gather(*(one(client, r) for r in requests))
    for request, payment_id in zip(requests, ids, strict=True):
        assert payment_id is not None, (request.key, request.outcomes)
        if answered_before[id(request)] is not None:
            # Answered before: replayed, the same payment.
            assert request.outcomes[-1] == "200", (request.key, request.outcomes)
            assert payment_id == request.payment_id, (request.key, request.outcomes)
        else:
            # Applied before the kill with its answer lost (replayed, 200), or only now (201).
            request.payment_id = payment_id
    assert len({r.payment_id for r in requests}) == len(requests), "a payment serves two keys"


async def _integrity(pg_dsn: str, invoice_ids: list[int]) -> dict[str, list]:
    """Nothing half-written (on the test's own invoices): each failing check names its rows."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        checks = {
            "payment_without_its_two_entries": """
                SELECT p.id FROM payments p WHERE p.invoice_id = ANY($1::bigint[])
                AND (SELECT count(*) FROM transactions t WHERE t.payment_id = p.id) <> 2""",
            "payment_entries_not_one_movement": """
                SELECT t.payment_id FROM transactions t WHERE t.invoice_id = ANY($1::bigint[])
                AND t.payment_id IS NOT NULL
                GROUP BY t.payment_id HAVING count(DISTINCT t.movement_id) <> 1""",
            "payment_amount_differs_from_entries": """
                SELECT p.id FROM payments p JOIN transactions t ON t.payment_id = p.id
                WHERE p.invoice_id = ANY($1::bigint[])
                GROUP BY p.id, p.amount HAVING bool_or(t.amount <> p.amount)""",
            "key_without_payment": """
                SELECT k.id, k.key FROM idempotency_keys k
                WHERE k.payment_id IS NULL AND k.refund_id IS NULL
                AND k.customer_id IN (
                    SELECT customer_id FROM invoices WHERE id = ANY($1::bigint[]))""",
            "crash_payment_without_exactly_one_key": """
                SELECT p.id FROM payments p LEFT JOIN idempotency_keys k ON k.payment_id = p.id
                WHERE p.invoice_id = ANY($1::bigint[])
                GROUP BY p.id HAVING count(k.id) <> 1""",
            "payment_without_created_event": """
                SELECT p.id FROM payments p
                WHERE p.invoice_id = ANY($1::bigint[]) AND NOT EXISTS (
                    SELECT 1 FROM outbox o WHERE o.type = 'payment.created'
                    AND (o.payload->>'payment_id')::bigint = p.id)""",
            "payment_with_extra_created_events": """
                SELECT (o.payload->>'payment_id')::bigint FROM outbox o
                WHERE o.type = 'payment.created'
                AND (o.payload->>'invoice_id')::bigint = ANY($1::bigint[])
                GROUP BY 1 HAVING count(*) <> 1""",
            "balance_event_count_differs": """
                SELECT c.id FROM customers c
                JOIN invoices i ON i.customer_id = c.id AND i.id = ANY($1::bigint[])
                WHERE (SELECT count(*) FROM payments p WHERE p.invoice_id = i.id)
                   <> (SELECT count(*) FROM outbox o WHERE o.type = 'balance.changed'
                       AND o.subject = 'customer:' || c.id
                       AND o.payload->>'reason' = 'payment'
                       AND o.occurred_at >= i.created_at)""",
        }
        found = {}
        for name, sql in checks.items():
            args = (invoice_ids,) if "$1" in sql else ()
            rows = await conn.fetch(sql, *args)
            if rows:
                found[name] = [tuple(row) for row in rows]
        return found
    finally:
        await conn.close()


async def _crash_payments(pg_dsn: str, invoice_ids: list[int]) -> dict[int, str]:
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch(
            """SELECT p.id, k.key FROM payments p
               LEFT JOIN idempotency_keys k ON k.payment_id = p.id
               WHERE p.invoice_id = ANY($1::bigint[])""",
            invoice_ids,
        )
        return {row["id"]: row["key"] for row in rows}
    finally:
        await conn.close()


async def _assert_consistent(
    db: Database, pg_dsn: str, invoice_ids: list[int], requests: list[PayRequest]
) -> dict[int, str]:
    problems = await reconcile(db)
    assert problems == [], [str(problem) for problem in problems]
    half_written = await _integrity(pg_dsn, invoice_ids)
    assert half_written == {}, half_written
    stored = await _crash_payments(pg_dsn, invoice_ids)
    for request in requests:
        if request.payment_id is not None:
            assert stored.get(request.payment_id) == request.key, (request.key, request.outcomes)
    keys = {request.key for request in requests}
    assert set(stored.values()) <= keys, set(stored.values()) - keys
    return stored


@pytest.mark.postgres
@pytest.mark.slow
async def test_sigkill_mid_payments_leaves_each_payment_whole_or_absent(
    tmp_path: Path, signing_key: bytes
) -> None:
    rng = random.Random()
    async with scratch_database("kabinet_crash") as url:
        await _crash_cycles(url, rng, tmp_path, signing_key)


async def _crash_cycles(url: str, rng: random.Random, tmp_path: Path, signing_key: bytes) -> None:
    pg_dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    db: Database | None = None
    server: ServerProcess | None = None
    try:
        upgrade(url)
        db = Database(url)
        targets = await _prepare(db)
        invoice_ids = [invoice_id for _, invoice_id in targets]
        log_path = tmp_path / "server.log"

        server = ServerProcess(url, signing_key, log_path)
        await server.wait_until_ready()
        tokens = []
        async with httpx.AsyncClient(timeout=10) as client:
            for email, _ in targets:
                response = await client.post(
                    f"{server.base}/auth/login", json={"email": email, "password": DEMO_PASSWORD}
                )
                assert response.status_code == 200, response.text
                tokens.append(response.json()["access_token"])

        sent: list[PayRequest] = []
        for cycle in range(CYCLES):
            batch = []
            for n in range(REQUESTS_PER_CYCLE):
                which = n % CUSTOMERS
                batch.append(
                    PayRequest(
                        token=tokens[which],
                        invoice_id=to_global_id("Invoice", invoice_ids[which]),
                        amount=f"0.{rng.randrange(1, 100):02d}",
                        key=f"crash-{cycle}-{n}-{secrets.token_hex(6)}",
                    )
                )
            sent += batch
            kill_after = rng.randrange(10, REQUESTS_PER_CYCLE // 3)
            in_flight = await _fire_and_kill(server, batch, kill_after)
            assert in_flight > 0, "the kill did not land mid-traffic"
            lost = [r for r in batch if r.payment_id is None]
            assert lost, "every request was answered: the kill came after the traffic"
            assert all(r.outcomes[-1].startswith("transport:") for r in lost)

            # (a) + (b): the database alone, with the server dead.
            after_kill = await _assert_consistent(db, pg_dsn, invoice_ids, sent)
            committed_keys = {key: payment_id for payment_id, key in after_kill.items()}

            # (c): a new server answers every key of the batch with exactly one payment.
            server = ServerProcess(url, signing_key, log_path)
            await server.wait_until_ready()
            await _resend_all(server, batch)
            for request in lost:
                # Committed before the kill with the answer lost: replayed; otherwise new.
                if request.key in committed_keys:
                    assert request.outcomes[-1] == "200", (request.key, request.outcomes)
                    assert request.payment_id == committed_keys[request.key]
                else:
                    assert request.outcomes[-1] == "201", (request.key, request.outcomes)
            stored = await _assert_consistent(db, pg_dsn, invoice_ids, sent)
            assert len(stored) == len(sent), (len(stored), len(sent))
            assert set(stored) == {r.payment_id for r in sent}
    finally:
        if server is not None:
            server.stop()
        if db is not None:
            await db.dispose()
