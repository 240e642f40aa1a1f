"""`invoice.issued` from a real run, the whole way: run_invoices → outbox → relay → Kafka
(Tansu) → the gateway's hub → a live `invoiceUpdated` subscriber over graphql-transport-ws;
and the analytics consumer, in its own consumer group, counting the same events once.

The gateway and the worker are two parts on one PostgreSQL database and one broker, as in
production: the server (uvicorn, in a thread) reads the bus for its subscribers, the worker
(this test's loop) relays the outbox and runs the domains' consumers.
"""

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest_asyncio
from prometheus_client import CollectorRegistry
from sqlalchemy import insert, select, update

from adapters.prometheus_consumer_metrics import PrometheusConsumerMetrics
from domains.billing.autopay import AutopayMode
from domains.billing.invoice_run import invoice_number, run_invoices
from domains.billing.proration import Period
from domains.billing.reconcile import reconcile
from domains.clock import ManualClock
from domains.customers.models import Customer
from domains.database import Database
from domains.events.relay import OutboxRelay
from domains.identity.models import Role, User
from domains.identity.passwords import hash_password
from domains.outbox import OutboxEvent
from gateway.services import Services, event_catalog
from gateway.worker import standard_consumers
from schema.domains import DOMAINS
from tests.conftest import DEMO_PASSWORD, make_settings, migrated_database
from tests.test_invoice_run import ACTIVE, LONG_AGO, MOSCOW, make_customer, make_tariff
from tests.test_subscriptions import (
    _graphql,
    _next,
    _relay,
    _serving,
    _subscribed,
    _token,
    _wait_subscribers,
)

JANUARY = Period(date(2026, 1, 1))
# The run fires at 03:00 on February 1st in Moscow: 00:00 UTC.
FIRED = datetime(2026, 2, 1, 0, 0, tzinfo=UTC)
DEADLINE = 60.0

ISSUED = """
subscription {
  invoiceUpdated {
    eventId
    invoice { number status amount { amount currency } dueDate issuedAt
              lines { days amount { amount } } }
  }
}
"""
STATISTICS = """
query($from: Date!, $to: Date!) {
  invoiceStatistics(from: $from, to: $to) {
    days { day invoices billed { amount currency } }
    totals { invoices billed { amount currency } }
  }
}
"""

outbox = OutboxEvent.__table__


@pytest_asyncio.fixture
async def delivery_url() -> AsyncIterator[str]:
    async with migrated_database("kabinet_delivery") as url:
        yield url


async def with_login(db: Database, customer_id: int | None, role: Role) -> str:
    """A login with the demo password: the customer's own user, or a new staff user."""
    password_hash = await asyncio.to_thread(hash_password, DEMO_PASSWORD)
    email = f"{secrets.token_hex(4)}@delivery.test"
    async with db.transaction() as session:
        if customer_id is None:
            await session.execute(
                insert(User).values(
                    email=email,
                    role=role,
                    is_active=True,
                    password_hash=password_hash,
                    created_at=LONG_AGO,
                )
            )
        else:
            user_id = await session.scalar(
                select(Customer.user_id).where(Customer.id == customer_id)
            )
            await session.execute(
                update(User)
                .where(User.id == user_id)
                .values(email=email, password_hash=password_hash)
            )
    return email


async def issued_event_ids(db: Database) -> dict[str, str]:
    """The outbox's `invoice.issued` event ids by the invoice number they announce."""
    async with db.connect() as conn:
        rows = await conn.execute(
            select(outbox.c.id, outbox.c.payload).where(outbox.c.type == "invoice.issued")
        )
        return {row.payload["number"]: str(row.id) for row in rows}


async def test_a_run_reaches_a_live_subscriber_through_kafka_and_the_analytics(
    delivery_url, signing_key, kafka_bootstrap
):
    prefix = f"delivery-{secrets.token_hex(4)}"
    settings = make_settings(
        delivery_url,
        signing_key,
        kafka_bootstrap=kafka_bootstrap,
        kafka_idempotent_producer=False,  # Tansu has no InitProducerId
        kafka_topics={domain.name: f"{prefix}.{domain.name}" for domain in DOMAINS},
        consumer_retry_backoff=timedelta(milliseconds=10),
    )
    worker = Services.from_settings(settings)
    await worker.bus.start()
    registry = CollectorRegistry()
    consumers = standard_consumers(worker, PrometheusConsumerMetrics(registry))
    stop = asyncio.Event()
    tasks = [asyncio.create_task(consumer.run(stop)) for consumer in consumers]

    def seen(outcome: str) -> float:
        labels = {"consumer": "analytics", "outcome": outcome}
        return registry.get_sample_value("kabinet_consumer_events_total", labels) or 0.0

    async def counted(handled: float, duplicate: float) -> None:
        async with asyncio.timeout(DEADLINE):
            while seen("handled") < handled or seen("duplicate") < duplicate:
                assert not any(task.done() for task in tasks), tasks
                await asyncio.sleep(0.05)

    try:
        price = await make_tariff(worker.db, "590.00")
        extra = await make_tariff(worker.db, "100.00")
        # 2026-01-17 21:30 UTC is the 18th in Moscow: 14 of 31 days of 100.00 is 45.16.
        joined = datetime(2026, 1, 17, 21, 30, tzinfo=UTC)
        alice = await make_customer(
            worker.db, [(price, LONG_AGO, None, ACTIVE), (extra, joined, None, ACTIVE)]
        )
        bob = await make_customer(worker.db, [(price, LONG_AGO, None, ACTIVE)])
        alice_email = await with_login(worker.db, alice, Role.CUSTOMER)
        bob_email = await with_login(worker.db, bob, Role.CUSTOMER)
        operator_email = await with_login(worker.db, None, Role.OPERATOR)
        with _serving(settings) as (base, app, _):
            alice_token = await _token(base, alice_email)
            bob_token = await _token(base, bob_email)
            async with _relay(asyncio.get_running_loop(), worker.db, worker.bus, settings):
                async for alice_ws in _subscribed(base, alice_token, ISSUED):
                    async for bob_ws in _subscribed(base, bob_token, ISSUED):
                        await _wait_subscribers(app, 2)
                        done = await run_invoices(
                            worker.db,
                            JANUARY,
                            zone=MOSCOW,
                            due_days=10,
                            autopay=AutopayMode.FULL,
                            clock=ManualClock(FIRED),
                        )
                        assert (done.invoices, done.lines) == (2, 3)
                        events = await issued_event_ids(worker.db)
                        got = (await _next(alice_ws))["invoiceUpdated"]
                        bobs = (await _next(bob_ws))["invoiceUpdated"]
                # Each got their own invoice, as the run issued it, and nothing else first.
                assert got == {
                    "eventId": events[invoice_number(alice, JANUARY)],
                    "invoice": {
                        "number": invoice_number(alice, JANUARY),
                        "status": "ISSUED",
                        "amount": {"amount": "635.16", "currency": "RUB"},
                        "dueDate": "2026-02-11",
                        "issuedAt": "2026-02-01T00:00:00+00:00",
                        "lines": [
                            {"days": 31, "amount": {"amount": "590.00"}},
                            {"days": 14, "amount": {"amount": "45.16"}},
                        ],
                    },
                }
                assert bobs["eventId"] == events[invoice_number(bob, JANUARY)]
                assert bobs["invoice"]["amount"] == {"amount": "590.00", "currency": "RUB"}

                await counted(handled=2, duplicate=0)
            # Published again, as after a relay killed between send and mark: the consumer
            # sees the same event ids and counts nothing twice.
            async with worker.db.transaction() as session:
                await session.execute(update(outbox).values(published_at=None))
            relay = OutboxRelay(worker.db, worker.bus, catalog=event_catalog(settings))
            try:
                while await relay.run_once():
                    pass
            finally:
                await relay.close()
            await counted(handled=2, duplicate=2)
            operator = await _token(base, operator_email)
            statistics = await _graphql(
                base, operator, STATISTICS, **{"from": "2026-01-31", "to": "2026-02-01"}
            )
        assert [str(problem) for problem in await reconcile(worker.db)] == []
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await worker.bus.stop()
        await worker.aclose()
    assert (seen("handled"), seen("duplicate")) == (2, 2)
    assert statistics["invoiceStatistics"] == {
        "days": [
            {"day": "2026-02-01", "invoices": 2, "billed": {"amount": "1225.16", "currency": "RUB"}}
        ],
        "totals": [{"invoices": 2, "billed": {"amount": "1225.16", "currency": "RUB"}}],
    }
