"""Notifications benchmark: `invoice.issued` events through the Kafka-wire broker to the
notification consumer, and the dispatcher's emails to an SMTP sink, beside a bare loop.

    .venv/bin/python bench/notifications.py                  # 100,000 events
    .venv/bin/python bench/notifications.py --events 10000   # a quick look

Recreates the PostgreSQL database `kabinet_notify_bench` and loads `--events` customers
(set-based: a user with an email each, no phone, no device, default preferences), starts a
Tansu broker (KABINET_BENCH_KAFKA names another) and the SMTP sink (`bench/smtp_sink.py`,
aiosmtpd in its own process). In this process, as `kabinet worker` runs them: the
`notifications` consumer (its group, the planner's handlers, the settings' attempts,
`KABINET_CONSUMER_BATCH_SIZE` events per transaction) and the dispatcher, sending over the
SMTP channel with `KABINET_SMTP_CONNECTIONS` reused sessions. `invoice.issued` is email
and in-app only (domains/notifications/rules.py), so neither the SMS gateway nor the push
sandboxes take part.

Then one `invoice.issued` event per customer (the payload domains/billing/events.py
documents) is published to billing's topic in batches of the relay's size, as the relay
drains an invoice run, each stamped just before its batch is sent. Prints:

- events/s the consumer handled (from the first publish to its last commit);
- emails/s the sink received (its first message to its last) and the sessions it saw;
- p50/p99/max from the event's time to the record's `sent_at` (one clock, this machine);
- the check: records sent = messages the sink received = distinct notification keys.

Last, the floor: the same number of emails, prebuilt, sent by bare aiosmtplib loops on as
many connections to the same sink: what SMTP and the sink cost, with no database.
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import aiosmtplib
import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from adapters.kafka_bus import KafkaBus
from adapters.smtp_channel import SmtpChannel
from bench.harness import ADMIN_URL, fresh_database
from domains.clock import SystemClock
from domains.database import Database
from domains.events.cloudevent import CloudEvent
from domains.events.consumer import EventConsumer
from domains.events.metrics import Outcome
from domains.notifications.channel import ChannelKind
from domains.notifications.dispatch import Dispatcher, ResetLinks
from domains.notifications.plan import Planner
from domains.notifications.templates import Templates
from gateway.services import event_catalog
from gateway.settings import Settings
from schema.notifications import CONSUMER_NAME
from tests.kafka import TansuBroker

NAME = "kabinet_notify_bench"
EVENT = "invoice.issued"
REPO = Path(__file__).resolve().parent.parent

LOAD = (
    """INSERT INTO users (email, role, is_active, password_hash, created_at)
    SELECT 'n' || g || '@bench.test', 'customer', true, 'x', now()
    FROM generate_series(1, $1) AS g""",
    """INSERT INTO customers (user_id, contract_num, full_name, balance, currency, created_at)
    SELECT id, 'N-' || id, 'Bench ' || id, 0, 'RUB', now() FROM users""",
    "ANALYZE users, customers",
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--database", default=NAME)
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds to wait for every email"
    )
    return parser.parse_args(argv)


class Counting:
    """The consumer's metrics: its outcomes, and when the last was reached."""

    def __init__(self) -> None:
        self.outcomes: dict[Outcome, int] = dict.fromkeys(Outcome, 0)
        self.last = 0.0

    def finished(self, consumer: str, outcome: Outcome) -> None:
        self.outcomes[outcome] += 1
        self.last = time.perf_counter()

    def retried(self, consumer: str) -> None:
        pass

    def lag(self, consumer: str, topic: str, partition: int, behind: int) -> None:
        pass

    def released(self, consumer: str, topic: str, partition: int) -> None:
        pass


class Sink:
    """bench/smtp_sink.py as a child process: its port, and its counts per phase."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, str(REPO / "bench" / "smtp_sink.py")],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        self.port = int(self._process.stdout.readline())

    def phase(self) -> dict[str, float | int | None]:
        """What it received since the last phase; it starts counting afresh."""
        assert self._process.stdout is not None
        self._process.send_signal(10)  # SIGUSR1
        return json.loads(self._process.stdout.readline())

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)


def invoice_issued(customer_id: int, at: datetime) -> CloudEvent:
    invoice_id = customer_id
    return CloudEvent(
        id=uuid.uuid4(),
        type=EVENT,
        source="urn:kabinet:billing",
        subject=f"customer:{customer_id}",
        time=at,
        data={
            "version": 1,
            "invoice_id": invoice_id,
            "customer_id": customer_id,
            "number": f"M202601-{invoice_id:07d}",
            "period_start": "2026-01-01",
            "period_end": "2026-01-31",
            "amount": "590.00",
            "currency": "RUB",
            "due_date": "2026-02-10",
            "line_count": 1,
            "lines": [
                {
                    "subscription_id": customer_id,
                    "tariff_id": 1,
                    "days": 31,
                    "amount": "590.00",
                    "description": "Тариф «Домашний» за январь 2026",
                }
            ],
        },
    )


async def load(database: str, events: int) -> list[int]:
    conn = await asyncpg.connect(ADMIN_URL.rsplit("/", 1)[0] + f"/{database}")
    try:
        for statement in LOAD:
            arguments = (events,) if "$1" in statement else ()
            await conn.execute(statement, *arguments)
        return [row[0] for row in await conn.fetch("SELECT id FROM customers ORDER BY id")]
    finally:
        await conn.close()


async def publish(bus: KafkaBus, topic: str, customers: list[int], batch: int) -> float:
    """Every event, a batch at a time, each stamped just before its batch; the seconds."""
    began = time.perf_counter()
    for start in range(0, len(customers), batch):
        now = datetime.now(UTC)
        events = [invoice_issued(c, now) for c in customers[start : start + batch]]
        failed = await bus.publish_many([(topic, e.subject, e.to_json()) for e in events])
        if any(failed):
            raise SystemExit(f"publishing failed: {next(f for f in failed if f)!r}")
    return time.perf_counter() - began


async def finished(db: Database) -> tuple[int, int, int]:
    """Email records sent, failed and still queued."""
    async with db.connect() as conn:
        row = (
            await conn.exec_driver_sql(
                "SELECT count(*) FILTER (WHERE status = 'sent'),"
                " count(*) FILTER (WHERE status = 'failed'),"
                " count(*) FILTER (WHERE status = 'queued')"
                " FROM notifications WHERE medium = 'email'"
            )
        ).one()
    return int(row[0]), int(row[1]), int(row[2])


async def latency(db: Database) -> tuple[float, float, float]:
    async with db.connect() as conn:
        row = (
            await conn.exec_driver_sql(
                "SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP"
                " (ORDER BY extract(epoch FROM sent_at - event_time)),"
                " max(extract(epoch FROM sent_at - event_time))"
                " FROM notifications WHERE medium = 'email' AND status = 'sent'"
            )
        ).one()
    (p50, p99), worst = row
    return float(p50), float(p99), float(worst)


async def floor(port: int, count: int, connections: int) -> float:
    """`count` prebuilt emails over `connections` bare aiosmtplib sessions; the seconds."""
    body = "Счёт M202601-0000001 на 590.00 RUB выставлен.\r\n".encode()
    queue = iter(range(count))

    async def session() -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
        await smtp.connect()
        try:
            for n in queue:
                message = (
                    b"From: noreply@kabinet.local\r\nTo: n@bench.test\r\n"
                    b"Subject: invoice\r\nX-Kabinet-Notification: floor-%d\r\n"
                    b"Content-Type: text/plain; charset=utf-8\r\n\r\n" % n
                ) + body
                await smtp.sendmail("noreply@kabinet.local", ["n@bench.test"], message)
        finally:
            await smtp.quit()

    began = time.perf_counter()
    await asyncio.gather(*(session() for _ in range(connections)))
    return time.perf_counter() - began


async def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    url = await fresh_database(args.database)
    started = time.perf_counter()
    customers = await load(args.database, args.events)
    print(f"loaded {len(customers)} customers in {time.perf_counter() - started:.1f} s")

    sink = Sink()
    bootstrap = os.environ.get("KABINET_BENCH_KAFKA")
    tansu = None
    if bootstrap is None:
        tansu = TansuBroker(Path(tempfile.mkdtemp(prefix="kabinet-notify-bench-")))
        tansu.start()
        bootstrap = tansu.bootstrap
    settings = Settings(database_url=url, smtp_host="127.0.0.1", smtp_port=sink.port)
    catalog = event_catalog(settings)
    topic = catalog.topic_of(EVENT)
    db = Database(url)
    clock = SystemClock()
    bus = KafkaBus(
        bootstrap,
        client_id="bench-notify",
        idempotent=tansu is None,  # Tansu refuses InitProducerId
        partitions=settings.kafka_partitions,
    )
    smtp = SmtpChannel(
        host="127.0.0.1",
        port=sink.port,
        sender=settings.smtp_from,
        clock=clock,
        connections=settings.smtp_connections,
    )
    metrics = Counting()
    consumer = EventConsumer(
        CONSUMER_NAME,
        db,
        bus,
        [topic],
        Planner(Templates()).handlers(),
        dead_letter_suffix=settings.kafka_dead_letter_suffix,
        max_attempts=settings.consumer_max_attempts,
        backoff=settings.consumer_retry_backoff,
        metrics=metrics,
    )
    dispatcher = Dispatcher(
        db,
        {ChannelKind.EMAIL: smtp},
        clock=clock,
        links=ResetLinks(b"k" * 32, settings.password_reset_url),
        max_attempts=settings.notify_max_attempts,
        backoff=settings.notify_retry_backoff,
        poll_interval=settings.notify_poll_interval.total_seconds(),
    )
    print(
        f"notifications: {args.events} {EVENT} events, {settings.kafka_partitions} partitions, "
        f"{settings.smtp_connections} SMTP connections; the host's load: "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        await bus.start()
        await bus.ensure_topics([topic, topic + settings.kafka_dead_letter_suffix])
        tasks = [
            asyncio.create_task(consumer.run(stop)),
            asyncio.create_task(dispatcher.run(stop)),
        ]
        cpu = time.process_time()
        began = time.perf_counter()
        published = await publish(bus, topic, customers, settings.relay_batch_size)
        print(f"  published in {published:.1f} s ({len(customers) / published:,.0f} events/s)")
        deadline = began + args.timeout
        while time.perf_counter() < deadline:
            sent, failed, queued = await finished(db)
            if sent + failed >= len(customers) or any(task.done() for task in tasks):
                break
            await asyncio.sleep(0.5)
        elapsed = time.perf_counter() - began
        cpu = time.process_time() - cpu
        stop.set()
        await asyncio.gather(*tasks)
        tasks = []
        received = sink.phase()
        handled = metrics.outcomes[Outcome.HANDLED]
        consumed = metrics.last - began
        print(
            f"  consumer: {handled} handled in {consumed:.1f} s: {handled / consumed:,.0f} "
            f"events/s (outcomes { ({k.value: v for k, v in metrics.outcomes.items() if v}) })"
        )
        emails = int(received["received"] or 0)
        span = float(received["last"] or 0) - float(received["first"] or 0)
        print(
            f"  email: {emails} received by the sink in {span:.1f} s: "
            f"{emails / span if span else 0:,.0f} emails/s over {received['sessions']} sessions"
        )
        p50, p99, worst = await latency(db)
        print(f"  event to sent: p50 {p50:.2f} s, p99 {p99:.2f} s, max {worst:.2f} s")
        print(
            f"  all in {elapsed:.1f} s; this process's CPU {cpu:.1f} s "
            f"({cpu * 1000 / max(handled, 1):.2f} ms per event)"
        )
        sent, failed, queued = await finished(db)
        same = sent == emails == received["distinct"] and not received["keyless"]
        print(
            f"  check: records sent {sent}, failed {failed}, queued {queued}; sink received "
            f"{emails}, distinct keys {received['distinct']}: "
            + ("OK" if same and sent == len(customers) else "MISMATCH")
        )

        seconds = await floor(sink.port, len(customers), settings.smtp_connections)
        bare = sink.phase()
        print(
            f"  floor (bare aiosmtplib, {settings.smtp_connections} connections): "
            f"{bare['received']} in {seconds:.1f} s: {int(bare['received'] or 0) / seconds:,.0f}"
            " emails/s"
        )
        if not same or sent != len(customers):
            raise SystemExit("the sink's count differs from the records sent")
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await smtp.aclose()
        await bus.stop()
        await db.dispose()
        sink.stop()
        if tansu is not None:
            tansu.stop()


if __name__ == "__main__":
    asyncio.run(main())
