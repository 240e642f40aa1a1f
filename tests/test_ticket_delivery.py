"""Support's live updates the whole way: a ticket's events → outbox → relay → Kafka (Tansu)
→ the gateway's hub → `ticketUpdated`, `ticketMessageAdded` and `ticketQueueChanged`
subscribers over graphql-transport-ws.

The gateway (uvicorn, in a thread) reads the bus for its subscribers; the worker (this
test's loop) writes as the support actions do, and relays the outbox. A customer gets an
operator's reply and never the internal note written before it; staff get both; another
customer gets nothing of it; the queue is staff's alone.
"""

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest_asyncio
from sqlalchemy import insert, select

from domains.customers.models import Customer
from domains.database import Database
from domains.events.relay import OutboxRelay
from domains.identity.models import Role, User
from domains.support import events
from domains.support.models import (
    AssignmentReason,
    AuthorKind,
    Ticket,
    TicketCategory,
    TicketChannel,
    TicketPriority,
    TicketStatus,
)
from domains.support.thread import write_message
from domains.support.ticket import TicketRow, tickets_by_ids
from gateway.services import Services, event_catalog
from resolvers.relay import to_global_id
from schema.domains import DOMAINS
from tests.conftest import make_settings, migrated_database
from tests.test_invoice_delivery import with_login
from tests.test_invoice_run import ACTIVE, LONG_AGO, make_customer, make_tariff
from tests.test_subscriptions import (
    _by_operation,
    _error_code,
    _next,
    _relay,
    _serving,
    _subscribe,
    _subscribed,
    _token,
    _wait_subscribers,
)

NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)

UPDATED = """
subscription($ticket: ID, $after: ID) {
  ticketUpdated(ticketId: $ticket, after: $after) {
    eventId change ticket { id status messages { body internal } }
  }
}
"""
THREAD = """
subscription($ticket: ID!, $after: ID) {
  ticketMessageAdded(ticketId: $ticket, after: $after) {
    eventId message { authorKind body internal } ticket { id }
  }
}
"""
QUEUE = "subscription { ticketQueueChanged { eventId change ticket { id subject } } }"


@pytest_asyncio.fixture
async def delivery_url() -> AsyncIterator[str]:
    async with migrated_database("kabinet_ticket_delivery") as url:
        yield url


async def user_of(db: Database, customer_id: int) -> int:
    async with db.connect() as conn:
        return await conn.scalar(select(Customer.user_id).where(Customer.id == customer_id))


async def staff_id(db: Database, email: str) -> int:
    async with db.connect() as conn:
        return await conn.scalar(select(User.id).where(User.email == email))


async def _ticket(db: Database, ticket_id: int) -> TicketRow:
    async with db.read() as reader:
        return (await tickets_by_ids(reader, [ticket_id]))[ticket_id]


async def open_ticket(
    db: Database, customer_id: int, subject: str, assignee: int | None = None
) -> TicketRow:
    """A new ticket and its events, in one transaction as opening one writes them."""
    created_by = await user_of(db, customer_id)
    async with db.transaction() as session:
        ticket_id = (
            await session.execute(
                insert(Ticket)
                .values(
                    customer_id=customer_id,
                    category=TicketCategory.NO_CONNECTION,
                    subject=subject,
                    priority=TicketPriority.NORMAL,
                    status=TicketStatus.NEW,
                    channel=TicketChannel.WEB,
                    assignee_id=assignee,
                    created_by=created_by,
                    created_at=NOW,
                    updated_at=NOW,
                )
                .returning(Ticket.id)
            )
        ).scalar_one()
        await events.ticket_created(
            session,
            ticket_id=ticket_id,
            customer_id=customer_id,
            contract_id=None,
            category=TicketCategory.NO_CONNECTION,
            priority=TicketPriority.NORMAL,
            priority_rule_id=None,
            status=TicketStatus.NEW,
            channel=TicketChannel.WEB,
            subject=subject,
            created_by=created_by,
        )
        if assignee is not None:
            await events.ticket_assigned(
                session,
                ticket_id=ticket_id,
                customer_id=customer_id,
                operator_id=assignee,
                previous_operator_id=None,
                reason=AssignmentReason.AUTO,
                assigned_by=None,
                priority=TicketPriority.NORMAL,
                category=TicketCategory.NO_CONNECTION,
            )
    return await _ticket(db, ticket_id)


async def _relay_all(services: Services) -> None:
    """Publishes what the outbox holds, before any gateway reads the bus."""
    relay = OutboxRelay(services.db, services.bus, catalog=event_catalog(services.settings))
    try:
        while await relay.run_once():
            pass
    finally:
        await relay.close()


async def write(
    db: Database,
    ticket: TicketRow,
    author: int,
    body: str,
    internal: bool,
    kind: AuthorKind = AuthorKind.OPERATOR,
) -> None:
    async with db.transaction() as session:
        await write_message(
            session,
            ticket=ticket,
            author_kind=kind,
            author_id=author,
            body=body,
            internal=internal,
            now=NOW,
        )


async def test_an_operators_reply_reaches_the_customer_and_the_note_only_staff(
    delivery_url, signing_key, kafka_bootstrap
):
    prefix = f"tickets-{secrets.token_hex(4)}"
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
    try:
        tariff = await make_tariff(worker.db, "590.00")
        alice = await make_customer(worker.db, [(tariff, LONG_AGO, None, ACTIVE)])
        bob = await make_customer(worker.db, [(tariff, LONG_AGO, None, ACTIVE)])
        logins = {
            "alice": await with_login(worker.db, alice, Role.CUSTOMER),
            "bob": await with_login(worker.db, bob, Role.CUSTOMER),
            "operator": await with_login(worker.db, None, Role.OPERATOR),
            "other operator": await with_login(worker.db, None, Role.OPERATOR),
        }
        operator = await staff_id(worker.db, logins["operator"])
        ticket = await open_ticket(worker.db, alice, "No internet since the morning", operator)
        ticket_id = to_global_id("Ticket", ticket.id)
        await _relay_all(worker)  # the ticket's opening: before anyone subscribed
        with _serving(settings) as (base, app, _):
            tokens = {name: await _token(base, email) for name, email in logins.items()}
            # Staff's queue: refused to a customer before anything else.
            async for ws in _subscribed(base, tokens["alice"], QUEUE):
                assert await _error_code(ws) == "FORBIDDEN"
            async with _relay(asyncio.get_running_loop(), worker.db, worker.bus, settings):
                async for alice_ws in _subscribed(base, tokens["alice"], UPDATED):
                    await _subscribe(alice_ws, "2", THREAD, ticket=ticket_id)
                    await _subscribe(alice_ws, "3", UPDATED, ticket=ticket_id)
                    async for staff_ws in _subscribed(
                        base, tokens["operator"], THREAD, ticket=ticket_id
                    ):
                        await _subscribe(staff_ws, "2", QUEUE)
                        async for other_ws in _subscribed(base, tokens["other operator"], QUEUE):
                            async for bob_ws in _subscribed(base, tokens["bob"], UPDATED):
                                await _wait_subscribers(app, 7)
                                await write(worker.db, ticket, operator, "Line card fault?", True)
                                await write(
                                    worker.db, ticket, operator, "We are on it: 2 hours.", False
                                )
                                # The customer's first messages are the reply's: the note,
                                # relayed before it, never reached their feeds.
                                alices = await _by_operation(alice_ws, 3)
                                staffs = [await _next(staff_ws) for _ in range(2)]
                                queued = await open_ticket(worker.db, bob, "Router blinks red")
                                queue = [await _next(ws) for ws in (staff_ws, other_ws)]
                                mine = await open_ticket(worker.db, bob, "Slow", operator)
                                queue.append(await _next(staff_ws))
                                last = await open_ticket(worker.db, bob, "Still slow")
                                # The other operator's next is the last ticket: the one
                                # assigned to the first at once was never theirs.
                                queue.append(await _next(other_ws))
                                bobs = (await _next(bob_ws))["ticketUpdated"]
    finally:
        await worker.bus.stop()
        await worker.aclose()

    reply = {"body": "We are on it: 2 hours.", "internal": False}
    thread = alices["2"]["ticketMessageAdded"]
    assert thread["message"] == {"authorKind": "OPERATOR", **reply}
    assert thread["ticket"] == {"id": ticket_id}
    for updated in (alices["1"]["ticketUpdated"], alices["3"]["ticketUpdated"]):
        assert updated["eventId"] == thread["eventId"]
        assert updated["change"] == "MESSAGE_ADDED"
        # The ticket as it is now, read as the customer may: the note is not in it.
        assert updated["ticket"] == {"id": ticket_id, "status": "NEW", "messages": [reply]}
    assert [staff["ticketMessageAdded"]["message"] for staff in staffs] == [
        {"authorKind": "OPERATOR", "body": "Line card fault?", "internal": True},
        {"authorKind": "OPERATOR", **reply},
    ]
    assert staffs[1]["ticketMessageAdded"]["eventId"] == thread["eventId"]
    # A new ticket nobody took reaches every operator's queue; one assigned as it was
    # opened, only its assignee's.
    assert [
        (event["ticketQueueChanged"]["change"], event["ticketQueueChanged"]["ticket"]["id"])
        for event in queue
    ] == [
        ("NEW_UNASSIGNED", to_global_id("Ticket", queued.id)),
        ("NEW_UNASSIGNED", to_global_id("Ticket", queued.id)),
        ("ASSIGNED_TO_ME", to_global_id("Ticket", mine.id)),
        ("NEW_UNASSIGNED", to_global_id("Ticket", last.id)),
    ]
    assert queue[0]["ticketQueueChanged"]["ticket"]["subject"] == "Router blinks red"
    # Bob's first event is his own new ticket: nothing of Alice's thread reached him.
    assert bobs["change"] == "CREATED"
    assert bobs["ticket"]["id"] == to_global_id("Ticket", queued.id)
