"""The worker: relay, purge and consumers together, in process and as `kabinet worker`."""

import asyncio
import os
import secrets
import signal
import sys
import urllib.request
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from domains.database import Database
from domains.events.bus import Delivery
from domains.outbox import OutboxEvent, record_event
from gateway.app import create_app
from gateway.services import Services
from gateway.worker import Worker
from tests.conftest import make_settings, migrated_database
from tests.kafka import free_port
from tests.servers import free_socket, serve
from tests.test_relay import DEADLINE, until

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest_asyncio.fixture
async def worker_pg_url() -> AsyncIterator[str]:
    """A database of its own: the worker's relay publishes every unpublished row."""
    async with migrated_database("kabinet_worker") as url:
        yield url


class Collector:
    """A consumer that keeps what it reads (the worker's Runnable)."""

    def __init__(self, services: Services, topic: str) -> None:
        self.reader = services.bus.consumer([topic], group="collector")
        self.seen: list[Delivery] = []

    async def run(self, stop: asyncio.Event) -> None:
        await self.reader.start()
        try:
            while not stop.is_set():
                self.seen += await self.reader.fetch(wait=0.2)
        finally:
            await self.reader.stop()


async def test_the_embedded_worker_relays_to_its_consumers_and_stops_cleanly(
    sqlite_url: str, signing_key: bytes
):
    services = Services.from_settings(make_settings(sqlite_url, signing_key))
    collector = Collector(services, services.events.topics["billing"])
    worker = Worker(services, consumers=[collector])
    await services.bus.start()
    await worker.start()
    try:
        async with services.db.transaction() as tx:
            event_id = await record_event(tx, "payment.created", "customer:1", {"version": 1})
        await until(lambda: len(collector.seen) == 1)
        assert collector.seen[0].event().id == event_id

        async def marked() -> bool:  # the mark commits just after the broker's ack
            return await worker.relay.pending() == 0

        await until(marked)
    finally:
        await worker.stop()
        await services.bus.stop()
        await services.aclose()
    assert worker.relay.published_total == 1


@pytest.mark.slow
async def test_kabinet_worker_publishes_serves_metrics_and_stops_on_sigterm(
    worker_pg_url: str,
    kafka_bootstrap: str,
    signing_key: bytes,
):
    topic = f"test.billing.{secrets.token_hex(4)}"
    port = free_port()
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "KABINET_DATABASE_URL": worker_pg_url,
        "KABINET_JWT_PRIVATE_KEY": signing_key.decode(),
        "KABINET_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "KABINET_KAFKA_IDEMPOTENT_PRODUCER": "false",
        "KABINET_KAFKA_TOPICS": f'{{"billing": "{topic}", "identity": "i.{topic}", '
        f'"support": "s.{topic}"}}',
        "KABINET_WORKER_METRICS_PORT": str(port),
    }
    services = Services.from_settings(make_settings(worker_pg_url, signing_key))
    async with services.db.transaction() as tx:
        event_id = await record_event(tx, "payment.created", "customer:3", {"version": 1})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "worker", env=environment, cwd=REPO_ROOT
    )
    try:

        async def published() -> bool:
            async with services.db.connect() as conn:
                stmt = select(OutboxEvent.published_at).where(OutboxEvent.id == event_id)
                return (await conn.execute(stmt)).scalar_one() is not None

        await until(published)

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                return r.read().decode()

        async def serving() -> bool:
            try:
                return "kabinet_outbox_published_total 1.0" in await asyncio.to_thread(scrape)
            except OSError:
                return False

        await until(serving)
        assert "kabinet_outbox_relay_leader 1.0" in await asyncio.to_thread(scrape)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(DEADLINE):
            code = await process.wait()
        await services.aclose()
    assert code == 0


async def test_the_api_runs_the_embedded_worker_and_shows_its_metrics(
    sqlite_url: str, signing_key: bytes
):
    """Without Kafka the API process relays its own outbox; its /metrics says so. A row
    written by another process (no wake-up reaches the API's relay) goes by the fallback
    poll."""
    settings = make_settings(
        sqlite_url, signing_key, relay_fallback_poll_interval=timedelta(milliseconds=200)
    )
    app = create_app(settings)
    db = Database(sqlite_url)  # the test's own: the app's engine lives on the server's loop
    try:
        with serve(app, free_socket()) as base:
            async with db.transaction() as tx:
                await record_event(tx, "payment.created", "customer:1", {"version": 1})

            async def published() -> bool:
                async with db.connect() as conn:
                    stmt = select(OutboxEvent.id).where(OutboxEvent.published_at.is_(None))
                    return (await conn.execute(stmt)).first() is None

            await until(published)
            async with httpx.AsyncClient(base_url=base) as http:
                text = (await http.get("/metrics")).text
    finally:
        await db.dispose()
    assert "kabinet_outbox_published_total 1.0" in text
    assert "kabinet_outbox_relay_leader 1.0" in text
