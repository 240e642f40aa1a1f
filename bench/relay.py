"""Relay benchmark: events/s from the outbox to each broker, through the worker's relay.

    .venv/bin/python bench/relay.py                            # memory, kafka, rabbitmq
    .venv/bin/python bench/relay.py --broker rabbitmq --events 50000

Fills a scratch PostgreSQL database's outbox with `--events` `payment.created` rows over
`--subjects` customers (as payments leave them), then, for each broker, marks them all
unpublished and times the worker's `OutboxRelay` loop (its batch size the setting's default)
until it has published them all. Kafka is a Tansu broker started here unless
KABINET_BENCH_KAFKA names one; RabbitMQ is the machine's (KABINET_BENCH_RABBITMQ, default
127.0.0.1:5672) in a fresh vhost, with the deployment's consumer groups' queues declared,
so every event is routed and stored, as in production.
"""

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from adapters.kafka_bus import KafkaBus
from bench.harness import ADMIN_URL, fresh_database
from domains.database import Database
from domains.events.bus import EventBus
from domains.events.memory_bus import MemoryBus
from domains.events.relay import OutboxRelay
from gateway.services import event_bus, event_catalog
from gateway.settings import Settings
from tests.kafka import TansuBroker
from tests.rabbitmq import SHARED, drop_vhost, fresh_vhost

BROKERS = ("memory", "kafka", "rabbitmq")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default="kabinet_relay_bench")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--subjects", type=int, default=2_000)
    parser.add_argument("--broker", choices=[*BROKERS, "all"], default="all")
    return parser.parse_args(argv)


@contextlib.asynccontextmanager
async def broker_bus(broker: str, settings: Settings) -> AsyncIterator[EventBus]:
    """The bus of `broker`, as the wiring builds it, on a broker of the bench's own."""
    if broker == "memory":
        yield MemoryBus(partitions=settings.kafka_partitions)
    elif broker == "kafka":
        bootstrap = os.environ.get("KABINET_BENCH_KAFKA")
        tansu = None
        if bootstrap is None:
            tansu = TansuBroker(Path(tempfile.mkdtemp(prefix="kabinet-relay-bench-")))
            tansu.start()
            bootstrap = tansu.bootstrap
        try:
            yield KafkaBus(
                bootstrap,
                client_id="bench-relay",
                idempotent=tansu is None,  # Tansu refuses InitProducerId
                partitions=settings.kafka_partitions,
            )
        finally:
            if tansu is not None:
                tansu.stop()
    else:
        url, vhost = (
            (os.environ["KABINET_BENCH_RABBITMQ"], None)
            if ("KABINET_BENCH_RABBITMQ" in os.environ)
            else fresh_vhost()
        )
        if vhost is None and url == SHARED:
            print("  (no fresh vhost: rabbitmqctl unavailable; using the default one)")
        rabbit = settings.model_copy(update={"event_broker": "rabbitmq", "rabbitmq_url": url})
        try:
            yield event_bus(rabbit, event_catalog(rabbit))
        finally:
            drop_vhost(vhost)


async def fill(dsn: str, events: int, subjects: int) -> None:
    """`events` payment.created rows, a subject's in order, as payments write them."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """
            INSERT INTO outbox (id, type, subject, occurred_at, payload)
            SELECT gen_random_uuid(), 'payment.created', 'customer:' || (n % $2),
                   now() + n * interval '1 microsecond',
                   jsonb_build_object('version', 1, 'payment_id', n, 'invoice_id', null,
                       'customer_id', n % $2, 'amount', '10.00', 'currency', 'RUB',
                       'method', 'balance', 'status', 'succeeded')
            FROM generate_series(1, $1) AS n
            """,
            events,
            subjects,
        )
    finally:
        await conn.close()


async def relay(settings: Settings, bus: EventBus, expected: int) -> tuple[int, float]:
    """Marks the outbox unpublished and times the worker's relay loop publishing it all."""
    db = Database(settings.database_url)
    async with db.connect() as conn:
        await conn.exec_driver_sql("UPDATE outbox SET published_at = NULL")
        await conn.commit()
    outbox_relay = OutboxRelay(
        db, bus, catalog=event_catalog(settings), batch_size=settings.relay_batch_size
    )
    try:
        await bus.start()
        await bus.ensure_topics(event_catalog(settings).all_topics)
        stop = asyncio.Event()
        began = time.perf_counter()
        running = asyncio.create_task(outbox_relay.run(stop))
        # A counter, not an event: looked at every 10 ms, the resolution of the figure.
        while outbox_relay.published_total < expected and not running.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        seconds = time.perf_counter() - began
        stop.set()
        await running
        return outbox_relay.published_total, seconds
    finally:
        await outbox_relay.close()
        await bus.stop()
        await db.dispose()


async def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    url = await fresh_database(args.database)
    dsn = ADMIN_URL.rsplit("/", 1)[0] + f"/{args.database}"
    await fill(dsn, args.events, args.subjects)
    settings = Settings(database_url=url)
    print(
        f"relay: {args.events} events over {args.subjects} subjects, "
        f"batch {settings.relay_batch_size}, {settings.kafka_partitions} partitions"
    )
    for broker in BROKERS if args.broker == "all" else (args.broker,):
        async with broker_bus(broker, settings) as bus:
            published, seconds = await relay(settings, bus, args.events)
        print(f"  {broker:9} {published} in {seconds:.2f} s: {published / seconds:,.0f} events/s")
        if published != args.events:
            raise SystemExit(f"the relay published {published} of {args.events} events")


if __name__ == "__main__":
    asyncio.run(main())
