"""Who may watch which tickets, and what a resuming subscriber is sent: the support
subscriptions on the embedded server (SQLite, the demo data), read from the outbox.

The end-to-end path through Kafka is tests/test_ticket_delivery.py; here a stream resumes
from the outbox alone, which is where an internal note must be left out as well.
"""

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select

from domains.database import Database
from domains.outbox import OutboxEvent
from domains.support.models import AuthorKind
from domains.support.ticket import TicketRow
from resolvers.relay import to_global_id
from tests.test_subscriptions import (
    Server,
    _embedded,
    _error_code,
    _next,
    _serving,
    _subscribed,
    _token,
)
from tests.test_ticket_delivery import THREAD, UPDATED, open_ticket, staff_id, user_of, write

outbox = OutboxEvent.__table__
ALICE, BOB = 1, 2  # the demo's customers


@pytest.fixture
def server(sqlite_desk_copy: str, signing_key: bytes) -> Iterator[Server]:
    with _serving(_embedded(sqlite_desk_copy, signing_key)) as running:
        yield running


@pytest_asyncio.fixture
async def db(sqlite_desk_copy: str) -> AsyncIterator[Database]:
    database = Database(sqlite_desk_copy)
    yield database
    await database.dispose()


async def _newest_event(db: Database, type: str) -> str:
    async with db.connect() as conn:
        return str(
            await conn.scalar(
                select(outbox.c.id)
                .where(outbox.c.type == type)
                .order_by(outbox.c.occurred_at.desc(), outbox.c.id.desc())
                .limit(1)
            )
        )


@pytest_asyncio.fixture
async def thread(db: Database) -> tuple[TicketRow, str, str]:
    """Alice's ticket: her message (the event a client resumes after), an operator's note,
    then the operator's reply, none of it relayed; the ticket, and the ids of her message's
    and the note's events."""
    ticket = await open_ticket(db, ALICE, "No internet since the morning")
    await write(db, ticket, await user_of(db, ALICE), "Nothing works.", False, AuthorKind.CUSTOMER)
    after = await _newest_event(db, "ticket.message_added")
    operator = await staff_id(db, "operator@example.com")
    await write(db, ticket, operator, "Line card fault?", True)
    note = await _newest_event(db, "ticket.message_added")
    await write(db, ticket, operator, "We are on it.", False)
    return ticket, after, note


async def _first(base: str, email: str, query: str, **variables: Any) -> dict[str, Any]:
    async for ws in _subscribed(base, await _token(base, email), query, **variables):
        return await _next(ws)
    raise AssertionError("never subscribed")


async def _refusal(base: str, email: str, query: str, **variables: Any) -> str:
    async for ws in _subscribed(base, await _token(base, email), query, **variables):
        return await _error_code(ws)
    raise AssertionError("never subscribed")


async def test_a_resuming_customer_is_sent_the_reply_and_never_the_note(server, thread):
    base, _app, _ = server
    ticket, after, _note = thread
    ticket_id = to_global_id("Ticket", ticket.id)
    missed = await _first(base, "alice@example.com", THREAD, ticket=ticket_id, after=after)
    assert missed["ticketMessageAdded"]["message"] == {
        "authorKind": "OPERATOR",
        "body": "We are on it.",
        "internal": False,
    }
    updated = await _first(base, "alice@example.com", UPDATED, after=after)
    assert updated["ticketUpdated"]["eventId"] == missed["ticketMessageAdded"]["eventId"]
    assert [m["body"] for m in updated["ticketUpdated"]["ticket"]["messages"]] == [
        "Nothing works.",
        "We are on it.",
    ]
    # Staff resuming from the same event get the note first.
    noted = await _first(base, "operator@example.com", THREAD, ticket=ticket_id, after=after)
    assert noted["ticketMessageAdded"]["message"]["internal"] is True


async def test_who_may_watch_which_tickets(server, thread):
    base, _app, _ = server
    ticket, _after, _note = thread
    ticket_id = to_global_id("Ticket", ticket.id)
    alice_id = to_global_id("Customer", ALICE)
    both = (
        "subscription($t: ID, $c: ID) { ticketUpdated(ticketId: $t, customerId: $c) { eventId } }"
    )
    for email, query, variables, code in [
        # Another customer's ticket reads as missing, by both subscriptions.
        ("bob@example.com", UPDATED, {"ticket": ticket_id}, "NOT_FOUND"),
        ("bob@example.com", THREAD, {"ticket": ticket_id}, "NOT_FOUND"),
        ("bob@example.com", THREAD, {"ticket": to_global_id("Ticket", 10**6)}, "NOT_FOUND"),
        # A customer watches their own account; naming one is staff's.
        ("alice@example.com", both, {"c": alice_id}, "FORBIDDEN"),
        # Staff watch one customer's tickets, or one ticket.
        ("operator@example.com", UPDATED, {}, "BAD_USER_INPUT"),
        ("operator@example.com", both, {"t": ticket_id, "c": alice_id}, "BAD_USER_INPUT"),
        # An id of another type is no ticket.
        ("operator@example.com", THREAD, {"ticket": to_global_id("Invoice", 1)}, "NOT_FOUND"),
    ]:
        assert await _refusal(base, email, query, **variables) == code, (email, variables)


async def test_staff_resume_one_customers_tickets(server, thread):
    """Staff's stream of a customer's tickets has the note's event; the customer's not."""
    base, _app, _ = server
    _ticket, after, note = thread
    query = """
    subscription($c: ID, $a: ID) { ticketUpdated(customerId: $c, after: $a) { eventId change } }
    """
    got = await _first(
        base, "operator@example.com", query, c=to_global_id("Customer", ALICE), a=after
    )
    assert got == {"ticketUpdated": {"eventId": note, "change": "MESSAGE_ADDED"}}
    own = await _first(base, "alice@example.com", UPDATED, after=after)
    assert own["ticketUpdated"]["eventId"] != note
    assert await _refusal(base, "bob@example.com", UPDATED, after=after) == "NOT_FOUND"


async def test_the_queue_resumes_with_what_waits_and_what_was_given_to_the_viewer(server, db):
    """From the outbox too: a new ticket still unassigned is the queue's for every operator;
    one assigned as it was opened is only its assignee's, as an assignment."""
    base, _app, _ = server
    operator = await staff_id(db, "operator@example.com")
    await open_ticket(db, BOB, "Before the client went away")
    after = await _newest_event(db, "ticket.created")
    given = await open_ticket(db, ALICE, "Slow evenings", operator)
    waiting = await open_ticket(db, BOB, "Router blinks red")
    query = "subscription($a: ID) { ticketQueueChanged(after: $a) { change ticket { id } } }"
    mine = await _first(base, "operator@example.com", query, a=after)
    assert mine["ticketQueueChanged"] == {
        "change": "ASSIGNED_TO_ME",
        "ticket": {"id": to_global_id("Ticket", given.id)},
    }
    admins = await _first(base, "admin@example.com", query, a=after)
    assert admins["ticketQueueChanged"] == {
        "change": "NEW_UNASSIGNED",
        "ticket": {"id": to_global_id("Ticket", waiting.id)},
    }
