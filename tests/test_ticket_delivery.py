"""Support's live updates the whole way: a ticket's events → outbox → relay → Kafka (Tansu)
→ the gateway's hub → `ticketUpdated`, `ticketMessageAdded` and `ticketQueueChanged`
subscribers over graphql-transport-ws.

The gateway (uvicorn, in a thread) reads the bus for its subscribers; the worker (this
test's loop) writes as the support actions do, and relays the outbox. A customer gets an
operator's reply and never the internal note written before it; staff get both; another
customer gets nothing of it; the queue is staff's alone.
"""

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest_asyncio
from sqlalchemy import insert, select
from websockets.asyncio.client import ClientConnection

from domains.customers.models import Customer
from domains.database import Database
from domains.identity.models import Role, User
from domains.support import events
from domains.support.models import (
    AssignmentReason,
    AuthorKind,
    Presence,
    SupportOperator,
    SupportOperatorSkill,
    Ticket,
    TicketCategory,
    TicketChannel,
    TicketPriority,
    TicketStatus,
)
from domains.support.thread import write_message
from domains.support.ticket import TicketRow, tickets_by_ids
from gateway.services import Services
from schema.domains import DOMAINS
from tests.conftest import make_settings, migrated_database
from tests.test_invoice_delivery import with_login
from tests.test_invoice_run import ACTIVE, LONG_AGO, make_customer, make_tariff
from tests.test_subscriptions import (
    _error_code,
    _graphql,
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
NOTE = """
mutation($t: ID!, $b: String!) { addInternalNote(ticketId: $t, body: $b) { message { internal } } }
"""
REPLY = """
mutation($t: ID!, $b: String!) { addTicketMessage(ticketId: $t, body: $b) { ticket { status } } }
"""


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


async def make_operator(db: Database, email: str, skills: list[TicketCategory]) -> int:
    """A staff login that is a support operator, online, with `skills`."""
    user_id = await staff_id(db, email)
    async with db.transaction() as session:
        await session.execute(
            insert(SupportOperator).values(
                user_id=user_id, presence=Presence.ONLINE, presence_changed_at=NOW
            )
        )
        for category in skills:
            await session.execute(
                insert(SupportOperatorSkill).values(user_id=user_id, category=category)
            )
    return user_id


async def _results(ws: ClientConnection, count: int) -> list[tuple[str, dict[str, Any]]]:
    """The next `count` results, in order, with the operation each is of."""
    results = []
    for _ in range(count):
        message = json.loads(await asyncio.wait_for(ws.recv(), 20))
        assert message["type"] == "next", message
        results.append((message["id"], message["payload"]["data"]))
    return results


async def _open_over_rest(base: str, token: str, category: str, subject: str) -> str:
    """The seed's flow 2.4: the client posts the ticket; its global id."""
    async with httpx.AsyncClient(base_url=base, timeout=20) as client:
        response = await client.post(
            "/support/tickets",
            json={"category": category, "subject": subject, "body": "Since 8 am."},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 201, response.text
    return response.json()["ticket"]["id"]


def _changes(results: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, str, str]]:
    """(operation, change, ticket id) of ticketUpdated results."""
    return [
        (op, data["ticketUpdated"]["change"], data["ticketUpdated"]["ticket"]["id"])
        for op, data in results
    ]


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
        # Nobody handles moving: such a ticket waits in the queue.
        await make_operator(worker.db, logins["operator"], [TicketCategory.NO_CONNECTION])
        await make_operator(worker.db, logins["other operator"], [TicketCategory.BILLING])
        with _serving(settings) as (base, app, _):
            tokens = {name: await _token(base, email) for name, email in logins.items()}
            # Staff's queue: refused to a customer before anything else.
            async for ws in _subscribed(base, tokens["alice"], QUEUE):
                assert await _error_code(ws) == "FORBIDDEN"
            async with _relay(asyncio.get_running_loop(), worker.db, worker.bus, settings):
                async for alice_ws in _subscribed(base, tokens["alice"], UPDATED):
                    async for staff_ws in _subscribed(base, tokens["operator"], QUEUE):
                        async for other_ws in _subscribed(base, tokens["other operator"], QUEUE):
                            async for bob_ws in _subscribed(base, tokens["bob"], UPDATED):
                                await _wait_subscribers(app, 4)
                                ticket = await _open_over_rest(
                                    base, tokens["alice"], "no_connection", "No internet"
                                )
                                opened = await _results(alice_ws, 3)
                                mine = await _results(staff_ws, 1)
                                # Her thread, and the same ticket alone, both ways.
                                await _subscribe(alice_ws, "2", THREAD, ticket=ticket)
                                await _subscribe(alice_ws, "3", UPDATED, ticket=ticket)
                                await _subscribe(staff_ws, "2", THREAD, ticket=ticket)
                                await _wait_subscribers(app, 7)
                                note = await _graphql(
                                    base, tokens["operator"], NOTE, t=ticket, b="Line card?"
                                )
                                reply = await _graphql(
                                    base, tokens["operator"], REPLY, t=ticket, b="On it: 2 h."
                                )
                                # The customer's first messages since are the reply's: the
                                # note, relayed before it, never reached their feeds.
                                answered = await _results(alice_ws, 5)
                                staffs = await _results(staff_ws, 2)
                                queued = await _open_over_rest(
                                    base, tokens["bob"], "moving", "Moving on Monday"
                                )
                                # The other operator's first is Bob's: Alice's ticket, given
                                # to the first operator, was never theirs.
                                queue = [await _next(ws) for ws in (staff_ws, other_ws)]
                                bobs = (await _next(bob_ws))["ticketUpdated"]
    finally:
        await worker.bus.stop()
        await worker.aclose()

    # Opening: created, its first message, then the assignment, for the customer; for the
    # operator it was given to, an assignment to them (created already assigned: not
    # the queue's).
    assert _changes(opened) == [
        ("1", "CREATED", ticket),
        ("1", "MESSAGE_ADDED", ticket),
        ("1", "ASSIGNED", ticket),
    ]
    assert mine == [
        (
            "1",
            {
                "ticketQueueChanged": {
                    "eventId": mine[0][1]["ticketQueueChanged"]["eventId"],
                    "change": "ASSIGNED_TO_ME",
                    "ticket": {"id": ticket, "subject": "No internet"},
                }
            },
        )
    ]
    # The reply: once on the thread, on both ticket streams as a message and as the ticket
    # opening (support's first answer), each showing the ticket as the customer reads it.
    reply_message = {"authorKind": "OPERATOR", "body": "On it: 2 h.", "internal": False}
    thread = [data["ticketMessageAdded"] for op, data in answered if op == "2"]
    assert [event["message"] for event in thread] == [reply_message]
    assert thread[0]["ticket"] == {"id": ticket}
    updates = [(op, data) for op, data in answered if op != "2"]
    assert sorted(_changes(updates)) == [
        ("1", "MESSAGE_ADDED", ticket),
        ("1", "STATUS_CHANGED", ticket),
        ("3", "MESSAGE_ADDED", ticket),
        ("3", "STATUS_CHANGED", ticket),
    ]
    for _op, data in updates:
        assert data["ticketUpdated"]["ticket"]["status"] == "OPEN"
        assert data["ticketUpdated"]["ticket"]["messages"] == [
            {"body": "Since 8 am.", "internal": False},
            {"body": "On it: 2 h.", "internal": False},
        ]
    assert {
        data["ticketUpdated"]["eventId"]
        for _op, data in updates
        if data["ticketUpdated"]["change"] == "MESSAGE_ADDED"
    } == {thread[0]["eventId"]}
    # Staff's thread has the note, then the reply, as the mutations answered them.
    assert [(op, data["ticketMessageAdded"]["message"]) for op, data in staffs] == [
        ("2", {"authorKind": "OPERATOR", "body": "Line card?", "internal": True}),
        ("2", reply_message),
    ]
    assert note["addInternalNote"]["message"]["internal"] is True
    assert reply["addTicketMessage"]["ticket"]["status"] == "OPEN"
    # A new ticket nobody could take reaches every operator's queue.
    assert [event["ticketQueueChanged"]["change"] for event in queue] == ["NEW_UNASSIGNED"] * 2
    assert {event["ticketQueueChanged"]["ticket"]["id"] for event in queue} == {queued}
    # Bob's first event is his own new ticket: nothing of Alice's reached him.
    assert (bobs["change"], bobs["ticket"]["id"]) == ("CREATED", queued)
