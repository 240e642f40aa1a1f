"""A payment the whole way on RabbitMQ: payInvoice → outbox → relay → RabbitMQ → the
gateways' hubs → a live `paymentCreated` subscriber on each of two API instances, and the
domains' consumers (analytics among them), each in its own consumer group, handling the
payment's events.

As in production, the gateways (uvicorn, each in a thread) and the worker (this test's
loop) are parts on one PostgreSQL database and one broker (a fresh vhost of the machine's).
"""

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest_asyncio
from prometheus_client import CollectorRegistry

from adapters.prometheus_consumer_metrics import PrometheusConsumerMetrics
from adapters.rabbitmq_bus import RabbitMQBus
from domains.analytics.consumer import CONSUMER_NAME
from gateway.services import Services
from gateway.worker import standard_consumers
from schema.domains import DOMAINS
from tests.conftest import load_demo_into, make_settings, migrated_database
from tests.test_subscriptions import (
    PAYMENT,
    _next,
    _overdue_invoice,
    _pay,
    _relay,
    _serving,
    _subscribed,
    _token,
    _wait_subscribers,
)

DEADLINE = 60.0


@pytest_asyncio.fixture
async def pg_rabbit_url() -> AsyncIterator[str]:
    async with migrated_database("kabinet_rabbit") as url:
        await load_demo_into(url)
        yield url


async def test_a_payment_on_rabbitmq_reaches_the_consumers_and_a_live_subscriber(
    pg_rabbit_url, signing_key, rabbitmq_url
):
    prefix = f"rabbit-{secrets.token_hex(4)}"
    settings = make_settings(
        pg_rabbit_url,
        signing_key,
        event_broker="rabbitmq",
        rabbitmq_url=rabbitmq_url,
        kafka_topics={domain.name: f"{prefix}.{domain.name}" for domain in DOMAINS},
    )
    assert not settings.run_worker_in_process  # the gateway only reads the bus
    worker = Services.from_settings(settings)
    assert isinstance(worker.bus, RabbitMQBus)
    await worker.bus.start()
    registry = CollectorRegistry()
    consumers = standard_consumers(worker, PrometheusConsumerMetrics(registry))
    # The consumers that react to a payment (analytics; notifications once it has one).
    paid = {
        name
        for domain in DOMAINS
        for name, handlers in domain.consumers.items()
        if "payment.created" in handlers
    }
    stop = asyncio.Event()
    tasks = [asyncio.create_task(consumer.run(stop)) for consumer in consumers]

    def handled(consumer: str) -> float:
        labels = {"consumer": consumer, "outcome": "handled"}
        return registry.get_sample_value("kabinet_consumer_events_total", labels) or 0.0

    try:
        # Two API instances: each hub reads through its own queue, so each sees the event.
        with _serving(settings) as (base, app, _), _serving(settings) as (base_two, app_two, _):
            alice = await _token(base, "alice@example.com")
            invoice = await _overdue_invoice(base, alice)
            async with _relay(asyncio.get_running_loop(), worker.db, worker.bus, settings):
                async for ws in _subscribed(base, alice, PAYMENT):
                    async for ws_two in _subscribed(base_two, alice, PAYMENT):
                        await _wait_subscribers(app, 1)
                        await _wait_subscribers(app_two, 1)
                        payment = await _pay(base, alice, invoice)
                        got = (await _next(ws))["paymentCreated"]
                        assert got["payment"]["id"] == payment
                        assert (await _next(ws_two))["paymentCreated"] == got
                async with asyncio.timeout(DEADLINE):
                    while not all(handled(name) >= 1 for name in paid):
                        assert not any(task.done() for task in tasks), tasks
                        await asyncio.sleep(0.05)
        assert CONSUMER_NAME in paid
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await worker.bus.stop()
        await worker.aclose()
