"""The thread and lifecycle over GraphQL: addTicketMessage, addInternalNote, setTicketStatus,
slaPolicies and updateSlaPolicy, with their codes; a customer never reads an internal note,
by `ticket`, `node`, `Customer.tickets` or `_entities`. On a private copy of the demo
database, with a clock the tests move.
"""

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
import pytest_asyncio

from domains.clock import ManualClock
from domains.database import Database
from domains.identity.models import Role
from domains.identity.viewer import Viewer
from gateway.app import create_app
from resolvers.relay import to_global_id
from tests.conftest import app_client, graphql, login, make_settings
from tests.test_support_reads import _customer_of
from tests.test_support_thread import START, counts, make_ticket, ticket_of

MESSAGE = """
mutation($id: ID!, $body: String!) {
  addTicketMessage(ticketId: $id, body: $body) {
    ticket { status firstResponseAt slaPaused firstResponseDueAt resolutionDueAt }
    message { authorKind body internal }
  }
}
"""
NOTE = """
mutation($id: ID!, $body: String!) {
  addInternalNote(ticketId: $id, body: $body) { ticket { status } message { internal body } }
}
"""
STATUS = """
mutation($id: ID!, $status: TicketStatus!) {
  setTicketStatus(ticketId: $id, status: $status) { status slaPaused resolvedAt closedAt }
}
"""
THREAD = "query($id: ID!) { ticket(id: $id) { messages { body internal } } }"
NODE = "query($id: ID!) { node(id: $id) { ... on Ticket { messages { body internal } } } }"
MY_TICKETS = """{ me { customer { tickets(first: 10) { edges { node {
  messages { body internal } } } } } } }"""
ENTITIES = """query($reps: [_Any!]!) { _entities(representations: $reps) {
  ... on Ticket { messages { body internal } } } }"""
POLICIES = "{ slaPolicies { priority firstResponseMinutes resolutionMinutes } }"
UPDATE_POLICY = """
mutation($first: Int!, $resolution: Int!) {
  updateSlaPolicy(priority: HIGH, firstResponseMinutes: $first, resolutionMinutes: $resolution) {
    priority firstResponseMinutes resolutionMinutes updatedAt
  }
}
"""


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest_asyncio.fixture
async def client(
    sqlite_demo_copy: str, signing_key: bytes, clock: ManualClock
) -> AsyncIterator[httpx.AsyncClient]:
    # Tokens outlive the days the tests move the clock by.
    settings = make_settings(
        sqlite_demo_copy, signing_key, ticket_reopen_days=3, access_token_ttl=timedelta(days=5)
    )
    async for http in app_client(create_app(settings, clock=clock)):
        yield http


@pytest_asyncio.fixture
async def db(sqlite_demo_copy: str) -> AsyncIterator[Database]:
    database = Database(sqlite_demo_copy)
    yield database
    await database.dispose()


async def alices_ticket(db: Database) -> tuple[int, str]:
    """A new ticket of alice's: its id, and its global id."""
    customer_id, user_id = await _customer_of(db, "alice@example.com")
    ticket = await make_ticket(db, Viewer(user_id, Role.CUSTOMER, customer_id))
    return ticket.id, to_global_id("Ticket", ticket.id)


def codes(body: dict) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", ())]


async def test_a_thread_over_graphql_and_the_note_no_customer_path_shows(
    client: httpx.AsyncClient, db: Database, clock: ManualClock
):
    _, ticket_id = await alices_ticket(db)
    alice = await login(client, "alice@example.com")
    operator = await login(client, "operator@example.com")

    asked = await graphql(client, MESSAGE, {"id": ticket_id, "body": "No internet"}, alice)
    assert "errors" not in asked, asked
    assert asked["data"]["addTicketMessage"]["ticket"]["status"] == "NEW"
    assert asked["data"]["addTicketMessage"]["message"] == {
        "authorKind": "CUSTOMER",
        "body": "No internet",
        "internal": False,
    }

    clock.advance(timedelta(minutes=20))
    answered = await graphql(client, MESSAGE, {"id": ticket_id, "body": "Checking"}, operator)
    assert answered["data"]["addTicketMessage"]["ticket"]["status"] == "OPEN"
    assert answered["data"]["addTicketMessage"]["ticket"]["firstResponseAt"] == (
        "2026-12-01T09:20:00+00:00"
    )
    noted = await graphql(client, NOTE, {"id": ticket_id, "body": "Cable cut nearby"}, operator)
    assert noted["data"]["addInternalNote"]["message"] == {
        "internal": True,
        "body": "Cable cut nearby",
    }
    paused = await graphql(
        client, STATUS, {"id": ticket_id, "status": "PENDING_CUSTOMER"}, operator
    )
    assert paused["data"]["setTicketStatus"]["slaPaused"] is True

    public = [
        {"body": "No internet", "internal": False},
        {"body": "Checking", "internal": False},
    ]
    read = await graphql(client, THREAD, {"id": ticket_id}, alice)
    assert read["data"]["ticket"]["messages"] == public
    by_node = await graphql(client, NODE, {"id": ticket_id}, alice)
    assert by_node["data"]["node"]["messages"] == public
    mine = await graphql(client, MY_TICKETS, None, alice)
    [edge] = mine["data"]["me"]["customer"]["tickets"]["edges"]
    assert edge["node"]["messages"] == public
    entities = await client.post(
        "/subgraphs/support/graphql",
        json={
            "query": ENTITIES,
            "variables": {"reps": [{"__typename": "Ticket", "id": ticket_id}]},
        },
        headers={"Authorization": f"Bearer {alice}"},
    )
    assert entities.json()["data"]["_entities"] == [{"messages": public}]
    staff_read = await graphql(client, THREAD, {"id": ticket_id}, operator)
    assert [m["internal"] for m in staff_read["data"]["ticket"]["messages"]] == [
        False,
        False,
        True,
    ]

    clock.advance(timedelta(hours=2))
    back = await graphql(client, MESSAGE, {"id": ticket_id, "body": "Still down"}, alice)
    ticket = back["data"]["addTicketMessage"]["ticket"]
    assert (ticket["status"], ticket["slaPaused"]) == ("OPEN", False)
    # Created at 09:00 with 4 h and 24 h to go; paused 2 hours.
    assert ticket["firstResponseDueAt"] == "2026-12-01T15:00:00+00:00"
    assert ticket["resolutionDueAt"] == "2026-12-02T11:00:00+00:00"


async def test_refusals_carry_their_codes_and_write_nothing(
    client: httpx.AsyncClient, db: Database, clock: ManualClock
):
    pk, ticket_id = await alices_ticket(db)
    alice = await login(client, "alice@example.com")
    bob = await login(client, "bob@example.com")
    operator = await login(client, "operator@example.com")
    before = await counts(db)
    attempts = [
        (NOTE, {"id": ticket_id, "body": "x"}, alice, "FORBIDDEN"),
        (STATUS, {"id": ticket_id, "status": "OPEN"}, alice, "FORBIDDEN"),
        (MESSAGE, {"id": ticket_id, "body": "mine now"}, bob, "NOT_FOUND"),
        (MESSAGE, {"id": ticket_id, "body": " "}, alice, "BAD_USER_INPUT"),
        (MESSAGE, {"id": ticket_id, "body": "x" * 10_001}, operator, "BAD_USER_INPUT"),
        (MESSAGE, {"id": "nonsense", "body": "x"}, alice, "BAD_USER_INPUT"),
        (STATUS, {"id": to_global_id("Ticket", 10**9), "status": "OPEN"}, operator, "NOT_FOUND"),
    ]
    for query, variables, token, code in attempts:
        body = await graphql(client, query, variables, token)
        assert codes(body) == [code], (variables, body)
    assert await counts(db) == before

    # Resolved, then past the 3 days this app's KABINET_TICKET_REOPEN_DAYS allows.
    resolved = await graphql(client, STATUS, {"id": ticket_id, "status": "RESOLVED"}, operator)
    assert resolved["data"]["setTicketStatus"]["resolvedAt"] == "2026-12-01T09:00:00+00:00"
    before, stored = await counts(db), await ticket_of(db, pk)
    back = await graphql(client, STATUS, {"id": ticket_id, "status": "PENDING_CUSTOMER"}, operator)
    assert codes(back) == ["INVALID_TRANSITION"]
    clock.advance(timedelta(days=3, seconds=1))
    late = await graphql(client, MESSAGE, {"id": ticket_id, "body": "again?"}, alice)
    assert codes(late) == ["TICKET_CLOSED"]
    assert "3 days" in late["errors"][0]["message"]
    assert await counts(db) == before
    assert await ticket_of(db, pk) == stored


async def test_admins_read_and_edit_sla_policies_over_graphql(client: httpx.AsyncClient):
    admin = await login(client, "admin@example.com")
    operator = await login(client, "operator@example.com")
    policies = await graphql(client, POLICIES, None, admin)
    assert policies["data"]["slaPolicies"][0] == {
        "priority": "URGENT",
        "firstResponseMinutes": 15,
        "resolutionMinutes": 240,
    }
    assert codes(await graphql(client, POLICIES, None, operator)) == ["FORBIDDEN"]
    refused = await graphql(client, UPDATE_POLICY, {"first": 90, "resolution": 60}, admin)
    assert codes(refused) == ["BAD_USER_INPUT"]
    assert codes(await graphql(client, UPDATE_POLICY, {"first": 1, "resolution": 2}, operator)) == [
        "FORBIDDEN"
    ]
    updated = await graphql(client, UPDATE_POLICY, {"first": 45, "resolution": 600}, admin)
    assert updated["data"]["updateSlaPolicy"] == {
        "priority": "HIGH",
        "firstResponseMinutes": 45,
        "resolutionMinutes": 600,
        "updatedAt": "2026-12-01T09:00:00+00:00",
    }
    policies = await graphql(client, POLICIES, None, admin)
    assert policies["data"]["slaPolicies"][1]["firstResponseMinutes"] == 45
