"""Reading tickets: a customer sees their own and never an internal note; staff see all."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest_asyncio
from sqlalchemy import insert, select

from domains.customers.models import Customer
from domains.database import Database
from domains.identity.models import User
from domains.support.models import (
    AuthorKind,
    Ticket,
    TicketCategory,
    TicketChannel,
    TicketPriority,
    TicketStatus,
)
from domains.support.thread import write_message
from domains.support.ticket import TicketRow, tickets_by_ids
from gateway.app import create_app
from resolvers.relay import to_global_id
from tests.conftest import app_client, graphql, login, make_settings

NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)

THREAD = """
query($id: ID!) {
  ticket(id: $id) { subject status priority category messages { authorKind body internal } }
}
"""


async def _customer_of(db: Database, email: str) -> tuple[int, int]:
    async with db.transaction() as session:
        row = (
            await session.execute(
                select(Customer.id, User.id)
                .join(User, User.id == Customer.user_id)
                .where(User.email == email)
            )
        ).one()
    return row[0], row[1]


async def _ticket_with_note(db: Database, customer_id: int, user_id: int) -> TicketRow:
    async with db.transaction() as session:
        ticket_id = (
            await session.execute(
                insert(Ticket)
                .values(
                    customer_id=customer_id,
                    category=TicketCategory.BILLING,
                    subject="Charged twice",
                    priority=TicketPriority.NORMAL,
                    status=TicketStatus.NEW,
                    channel=TicketChannel.WEB,
                    created_by=user_id,
                    created_at=NOW,
                    updated_at=NOW,
                )
                .returning(Ticket.id)
            )
        ).scalar_one()
    async with db.read() as reader:
        [ticket] = (await tickets_by_ids(reader, [ticket_id])).values()
    async with db.transaction() as session:
        for kind, author, body, internal in (
            (AuthorKind.CUSTOMER, user_id, "I was charged twice in November.", False),
            (AuthorKind.OPERATOR, None, "Looks like a duplicate card capture.", True),
            (AuthorKind.SYSTEM, None, "Payment of 100.00 RUB received.", False),
        ):
            await write_message(
                session,
                ticket=ticket,
                author_kind=kind,
                author_id=author,
                body=body,
                internal=internal,
                now=NOW,
            )
    return ticket


@pytest_asyncio.fixture
async def client(sqlite_demo_copy: str, signing_key: bytes) -> AsyncIterator[httpx.AsyncClient]:
    async for http in app_client(create_app(make_settings(sqlite_demo_copy, signing_key))):
        yield http


@pytest_asyncio.fixture
async def ticket(sqlite_demo_copy: str) -> AsyncIterator[TicketRow]:
    db = Database(sqlite_demo_copy)
    customer_id, user_id = await _customer_of(db, "alice@example.com")
    yield await _ticket_with_note(db, customer_id, user_id)
    await db.dispose()


async def test_a_customer_reads_their_thread_without_internal_notes(
    client: httpx.AsyncClient, ticket: TicketRow
) -> None:
    token = await login(client, "alice@example.com")
    answer = await graphql(client, THREAD, {"id": to_global_id("Ticket", ticket.id)}, token)
    assert "errors" not in answer, answer
    read = answer["data"]["ticket"]
    assert (read["subject"], read["status"], read["priority"], read["category"]) == (
        "Charged twice",
        "NEW",
        "NORMAL",
        "BILLING",
    )
    assert [(m["authorKind"], m["internal"]) for m in read["messages"]] == [
        ("CUSTOMER", False),
        ("SYSTEM", False),
    ]


async def test_staff_read_the_internal_note(client: httpx.AsyncClient, ticket: TicketRow) -> None:
    token = await login(client, "operator@example.com")
    answer = await graphql(client, THREAD, {"id": to_global_id("Ticket", ticket.id)}, token)
    assert [m["internal"] for m in answer["data"]["ticket"]["messages"]] == [False, True, False]


async def test_another_customer_gets_not_found_by_every_path(
    client: httpx.AsyncClient, ticket: TicketRow
) -> None:
    token = await login(client, "bob@example.com")
    global_id = to_global_id("Ticket", ticket.id)
    direct = await graphql(client, THREAD, {"id": global_id}, token)
    assert direct["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    node = await graphql(
        client,
        "query($id: ID!) { node(id: $id) { ... on Ticket { subject } } }",
        {"id": global_id},
        token,
    )
    assert node["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_customer_tickets_newest_first(client: httpx.AsyncClient, ticket: TicketRow) -> None:
    token = await login(client, "alice@example.com")
    answer = await graphql(
        client,
        "{ me { customer { tickets(first: 5) { edges { node { subject } } } } } }",
        None,
        token,
    )
    assert "errors" not in answer, answer
    edges = answer["data"]["me"]["customer"]["tickets"]["edges"]
    assert [edge["node"]["subject"] for edge in edges] == ["Charged twice"]
