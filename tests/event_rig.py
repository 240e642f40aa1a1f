"""The worker as `kabinet worker` runs it, on PostgreSQL and the Kafka-wire broker (Tansu),
or as the embedded mode runs it (SQLite, the in-process bus): the outbox relay, the
domains' consumers and the worker's metrics, for the tests of the consumers. Outcomes are
read from the worker's own registry."""

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy import select, update

from domains.clock import SYSTEM_CLOCK, Clock
from domains.outbox import OutboxEvent
from gateway.services import Services
from gateway.settings import Settings
from gateway.worker import Worker
from schema.domains import DOMAINS
from tests.conftest import make_settings

DEADLINE = 60.0

outbox = OutboxEvent.__table__


@dataclass
class RunningWorker:
    settings: Settings
    services: Services
    worker: Worker
    registry: CollectorRegistry
    # Outbox rows from before the worker started: the demo's history, not the test's.
    before: set[Any] = field(default_factory=set)

    def sample(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def outcomes(self, consumer: str, outcome: str) -> float:
        return self.sample("kabinet_consumer_events_total", consumer=consumer, outcome=outcome)

    async def until_outcomes(
        self, consumer: str, *, handled: float, duplicate: float = 0.0
    ) -> None:
        """Waits until the consumer has handled (and seen again) that many events."""
        async with asyncio.timeout(DEADLINE):
            while True:
                seen = self.outcomes(consumer, "handled"), self.outcomes(consumer, "duplicate")
                if seen[0] >= handled and seen[1] >= duplicate:
                    break
                await asyncio.sleep(0.05)
        assert self.outcomes(consumer, "handled") == handled
        assert self.outcomes(consumer, "duplicate") == duplicate

    async def events(self) -> list[Any]:
        """The outbox rows the test wrote, in their order."""
        async with self.services.db.connect() as conn:
            rows = await conn.execute(select(outbox).order_by(outbox.c.occurred_at, outbox.c.id))
            return [row for row in rows if row.id not in self.before]

    async def redeliver(self) -> None:
        """Publishes the test's events again, as after a relay killed between send and mark:
        the same event ids reach every consumer a second time."""
        ids = [row.id for row in await self.events()]
        async with self.services.db.transaction() as session:
            await session.execute(
                update(outbox).where(outbox.c.id.in_(ids)).values(published_at=None)
            )


@asynccontextmanager
async def running_worker(
    url: str, signing_key: bytes, kafka_bootstrap: str | None, clock: Clock = SYSTEM_CLOCK
) -> AsyncIterator[RunningWorker]:
    """A worker with fresh topics of its own on the test broker; on the in-process bus
    without one."""
    prefix = f"consumers-{secrets.token_hex(4)}"
    kafka = (
        {}
        if kafka_bootstrap is None
        else {
            "kafka_bootstrap": kafka_bootstrap,
            "kafka_idempotent_producer": False,  # Tansu has no InitProducerId
            "kafka_topics": {domain.name: f"{prefix}.{domain.name}" for domain in DOMAINS},
        }
    )
    settings = make_settings(
        url,
        signing_key,
        consumer_retry_backoff=timedelta(milliseconds=10),
        relay_fallback_poll_interval=timedelta(milliseconds=200),
        **kafka,
    )
    services = Services.from_settings(settings, clock)
    await services.bus.start()
    registry = CollectorRegistry()
    worker = Worker(services, registry=registry)
    async with services.db.connect() as conn:
        before = set((await conn.execute(select(outbox.c.id))).scalars())
    await worker.start()
    try:
        yield RunningWorker(settings, services, worker, registry, before)
    finally:
        await worker.stop()
        await services.bus.stop()
        await services.aclose()
