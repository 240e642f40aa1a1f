"""Support's monitoring in the worker: ticket events -> outbox -> relay -> Kafka (Tansu) ->
the `support_monitoring` consumer -> the worker's registry, as Prometheus scrapes it; and the
open tickets and queue age read from the database. Redelivered events count nothing."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from prometheus_client import generate_latest

from domains.clock import ManualClock
from domains.identity.models import Role
from domains.support import events as support_events
from domains.support.models import TicketCategory, TicketChannel, TicketStatus
from domains.support.monitoring import CONSUMER_NAME, monitoring_handlers
from domains.support.ticket_create import create_ticket
from domains.support.ticket_message import add_ticket_message
from domains.support.ticket_status import set_ticket_status
from tests.conftest import migrated_database
from tests.event_rig import RunningWorker, running_worker
from tests.support_fixtures import add_customer, add_staff

MINUTE = timedelta(minutes=1)
REOPEN = timedelta(days=14)


@pytest_asyncio.fixture(scope="module")
async def metrics_url() -> AsyncIterator[str]:
    async with migrated_database("kabinet_ticket_metrics") as url:
        yield url


@pytest.fixture(params=["sqlite", "kafka"])
def backend(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    """The embedded mode (SQLite, the in-process bus), or PostgreSQL and the broker."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url"), None
    return request.getfixturevalue("metrics_url"), request.getfixturevalue("kafka_bootstrap")


def counters(rig: RunningWorker) -> dict[str, float]:
    """The ticket counters this test moves."""
    return {
        "created billing": rig.sample(
            "kabinet_tickets_created_total", category="billing", priority="normal"
        ),
        "created equipment": rig.sample(
            "kabinet_tickets_created_total", category="equipment", priority="high"
        ),
        "resolved": rig.sample(
            "kabinet_tickets_resolved_total", category="billing", priority="normal"
        ),
        "first responses": rig.sample(
            "kabinet_ticket_first_response_seconds_count", priority="normal"
        ),
        "first response seconds": rig.sample(
            "kabinet_ticket_first_response_seconds_sum", priority="normal"
        ),
        "within 15 min": rig.sample(
            "kabinet_ticket_first_response_seconds_bucket", priority="normal", le="900.0"
        ),
        "within 5 min": rig.sample(
            "kabinet_ticket_first_response_seconds_bucket", priority="normal", le="300.0"
        ),
        "breaches": rig.sample(
            "kabinet_ticket_sla_breaches_total", target="first_response", priority="high"
        ),
    }


async def test_ticket_events_feed_the_worker_metrics(
    backend: tuple[str, str | None], signing_key: bytes
) -> None:
    opened = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    clock = ManualClock(opened + timedelta(hours=1))
    async with running_worker(backend[0], signing_key, backend[1], clock) as rig:
        db = rig.services.db
        # Staff, not an online operator: the worker's presence sweep sets an operator with no
        # session offline, and nothing here needs one.
        operator = await add_staff(db, Role.OPERATOR)
        customer, contract_id = await add_customer(db)
        answered = await create_ticket(
            db,
            customer,
            category=TicketCategory.BILLING,
            subject="Double charge",
            body="I was charged twice.",
            contract_id=contract_id,
            channel=TicketChannel.WEB,
            clock=ManualClock(opened),
        )
        # Both wait in the queue. A repeat within 7 days: high.
        queued = await create_ticket(
            db,
            customer,
            category=TicketCategory.EQUIPMENT,
            subject="Router blinks",
            body="Red light.",
            channel=TicketChannel.MOBILE,
            clock=ManualClock(opened + MINUTE),
        )
        assert queued.ticket.assignee_id is None
        # The first public answer 10 minutes in counts; the second does not.
        for minutes in (10, 12):
            await add_ticket_message(
                db,
                operator,
                ticket_id=answered.ticket.id,
                body="Looking into it.",
                reopen_within=REOPEN,
                clock=ManualClock(opened + minutes * MINUTE),
            )
        await set_ticket_status(
            db,
            await add_staff(db, Role.OPERATOR),
            ticket_id=answered.ticket.id,
            status=TicketStatus.RESOLVED,
            clock=ManualClock(opened + 20 * MINUTE),
        )
        # A fixture for the SLA job's event (support-thread's worker job writes it).
        async with db.transaction() as session:
            await support_events.sla_breached(
                session,
                ticket_id=queued.ticket.id,
                customer_id=queued.ticket.customer_id,
                target="first_response",
                due_at=queued.ticket.first_response_due_at or opened,
                priority=queued.ticket.priority,
                assignee_id=None,
            )
        handled = monitoring_handlers(rig.worker.ticket_metrics).keys()
        counted = [row.type for row in await rig.events() if row.type in handled]
        await rig.until_outcomes(CONSUMER_NAME, handled=len(counted))

        assert counters(rig) == {
            "created billing": 1,
            "created equipment": 1,
            "resolved": 1,
            "first responses": 1,
            "first response seconds": 600,
            "within 15 min": 1,
            "within 5 min": 0,
            "breaches": 1,
        }

        # What stands now, from the database, as of the worker's clock.
        await rig.worker.refresh_ticket_backlog()
        assert rig.sample("kabinet_tickets_open", priority="high", status="new") == 1
        assert rig.sample("kabinet_tickets_open", priority="normal", status="open") == 0
        assert rig.sample("kabinet_ticket_queue_oldest_age_seconds") == 59 * 60
        scraped = generate_latest(rig.registry).decode()
        assert 'kabinet_tickets_open{priority="high",status="new"} 1.0' in scraped
        assert 'kabinet_tickets_created_total{category="billing",priority="normal"} 1.0' in scraped

        # Published again: every one a duplicate, counted once.
        before = counters(rig)
        await rig.redeliver()
        await rig.until_outcomes(CONSUMER_NAME, handled=len(counted), duplicate=len(counted))
        assert counters(rig) == before
