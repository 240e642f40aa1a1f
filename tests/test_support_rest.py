"""The support REST routes: POST and GET /support/tickets, GET /support/tickets/{id} and
POST /support/tickets/{id}/messages, in the billing routes' conventions (bearer token,
CSRF, `{"error": {code, message}}` bodies, nothing written on a refusal)."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import jsonschema_rs
import pytest
import pytest_asyncio
from sqlalchemy import func, select, update

from domains.customers.models import Contract
from domains.database import Database
from domains.models import metadata
from domains.support.models import Ticket, TicketStatus
from gateway.app import create_app
from resolvers.relay import to_global_id
from tests.conftest import app_client, graphql, login, make_settings

TABLES = ("tickets", "ticket_messages", "ticket_assignments", "outbox")
NOTE = "mutation($t: ID!) { addInternalNote(ticketId: $t, body: $b) { message { id } } }"
BOBS_CONTRACT = "Bob's contract"
NEW = {"category": "no_connection", "subject": "No internet", "body": "Since 8 am."}


@pytest_asyncio.fixture
async def client(sqlite_desk_copy: str, signing_key: bytes) -> AsyncIterator[httpx.AsyncClient]:
    async for http in app_client(create_app(make_settings(sqlite_desk_copy, signing_key))):
        yield http


@pytest_asyncio.fixture
async def tokens(client: httpx.AsyncClient) -> dict[str, str]:
    return {
        name: await login(client, f"{name}@example.com")
        for name in ("alice", "bob", "operator", "admin")
    }


def _db(client: httpx.AsyncClient) -> Database:
    return client._transport.app.state.services.db  # type: ignore[attr-defined]


async def _counts(client: httpx.AsyncClient) -> dict[str, int]:
    async with _db(client).connect() as conn:
        return {
            name: (
                await conn.execute(select(func.count()).select_from(metadata.tables[name]))
            ).scalar_one()
            for name in TABLES
        }


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _open(client: httpx.AsyncClient, token: str, **body: Any) -> dict[str, Any]:
    response = await client.post("/support/tickets", json={**NEW, **body}, headers=_auth(token))
    assert response.status_code == 201, response.text
    return response.json()


async def _document(client: httpx.AsyncClient) -> dict[str, Any]:
    return (await client.get("/openapi.json")).json()


def _conforms(document: dict[str, Any], path: str, method: str, response: httpx.Response) -> None:
    """The answer is what the OpenAPI document says the route answers with its status."""
    described = document["paths"][path][method]["responses"][str(response.status_code)]
    schema = described["content"]["application/json"]["schema"]
    jsonschema_rs.validate({**schema, "components": document["components"]}, response.json())


async def test_a_customer_opens_a_ticket_and_reads_their_own(client, tokens):
    document = await _document(client)
    alice = tokens["alice"]
    first = await _open(client, alice, subject="Router blinks red", category="equipment")
    response = await client.post(
        "/support/tickets", json={**NEW, "channel": "mobile"}, headers=_auth(alice)
    )
    assert response.status_code == 201
    _conforms(document, "/support/tickets", "post", response)
    second = response.json()
    assert second["ticket"] | {"id": None, "created_at": None, "updated_at": None} == {
        "id": None,
        "subject": "No internet",
        "category": "no_connection",
        "priority": second["ticket"]["priority"],
        "status": "new",
        "channel": "mobile",
        "contract_id": None,
        "created_at": None,
        "updated_at": None,
        "first_response_at": None,
        "resolved_at": None,
        "closed_at": None,
        "first_response_due_at": second["ticket"]["first_response_due_at"],
        "resolution_due_at": second["ticket"]["resolution_due_at"],
        "sla_paused": False,
    }
    assert second["ticket"]["first_response_due_at"] is not None, "the SLA's due times"
    assert [(m["author_kind"], m["body"]) for m in second["messages"]] == [
        ("customer", "Since 8 am.")
    ]
    # Newest first, a page at a time.
    response = await client.get("/support/tickets?first=1", headers=_auth(alice))
    assert response.status_code == 200
    _conforms(document, "/support/tickets", "get", response)
    page = response.json()
    assert [t["id"] for t in page["tickets"]] == [second["ticket"]["id"]]
    assert page["page_info"]["has_next_page"] is True
    after = page["page_info"]["end_cursor"]
    response = await client.get(
        "/support/tickets", params={"first": 5, "after": after}, headers=_auth(alice)
    )
    rest = response.json()
    assert response.status_code == 200, rest
    assert [t["id"] for t in rest["tickets"]] == [first["ticket"]["id"]]
    assert rest["page_info"]["has_next_page"] is False
    # Bob's list holds none of them.
    response = await client.get("/support/tickets", headers=_auth(tokens["bob"]))
    assert response.json()["tickets"] == []
    # One ticket with its thread.
    response = await client.get(f"/support/tickets/{first['ticket']['id']}", headers=_auth(alice))
    assert response.status_code == 200
    _conforms(document, "/support/tickets/{id}", "get", response)
    assert response.json()["ticket"]["subject"] == "Router blinks red"
    # About one of her contracts.
    async with _db(client).connect() as conn:
        contract = await conn.scalar(select(Contract.id).where(Contract.customer_id == 1))
    about = await _open(client, alice, contract_id=to_global_id("Contract", contract))
    assert about["ticket"]["contract_id"] == to_global_id("Contract", contract)


async def test_staff_open_one_on_a_customers_behalf_and_have_no_list(client, tokens):
    operator = tokens["operator"]
    opened = await _open(client, operator, customer_id=to_global_id("Customer", 1))
    assert opened["ticket"]["channel"] == "staff"
    assert opened["messages"][0]["author_kind"] == "operator"
    response = await client.get("/support/tickets", headers=_auth(tokens["alice"]))
    assert [t["id"] for t in response.json()["tickets"]] == [opened["ticket"]["id"]]
    response = await client.get("/support/tickets", headers=_auth(operator))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "FORBIDDEN"


async def test_every_route_needs_a_token(client):
    document = await _document(client)
    ticket = to_global_id("Ticket", 1)
    for method, path, body in [
        ("GET", "/support/tickets", None),
        ("POST", "/support/tickets", NEW),
        ("GET", f"/support/tickets/{ticket}", None),
        ("POST", f"/support/tickets/{ticket}/messages", {"body": "hello"}),
    ]:
        response = await client.request(method, path, json=body)
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "UNAUTHENTICATED"
        described = path.replace(ticket, "{id}")
        _conforms(document, described, method.lower(), response)


@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [
        ({**NEW, "subject": "  "}, 400, "BAD_USER_INPUT", "the subject is empty"),
        ({**NEW, "subject": "x" * 201}, 400, "BAD_USER_INPUT", "longer than 200"),
        ({**NEW, "body": "x" * 10_001}, 400, "BAD_USER_INPUT", "longer than 10000"),
        ({**NEW, "body": ""}, 400, "BAD_USER_INPUT", "the message is empty"),
        ({**NEW, "category": "printer"}, 400, "BAD_USER_INPUT", "'category'"),
        ({**NEW, "category": "NO_CONNECTION"}, 400, "BAD_USER_INPUT", "'category'"),
        ({**NEW, "subject": 7}, 400, "BAD_USER_INPUT", "'subject'"),
        ({**NEW, "subject": "a\x00b"}, 400, "BAD_USER_INPUT", "NUL"),
        ({"category": "other", "body": "x"}, 400, "BAD_USER_INPUT", "'subject'"),
        ({**NEW, "channel": "staff"}, 400, "BAD_USER_INPUT", "web or mobile"),
        ({**NEW, "contract_id": "not an id"}, 400, "BAD_USER_INPUT", "malformed id"),
        # Bob's contract, and another type's id.
        ({**NEW, "contract_id": BOBS_CONTRACT}, 404, "NOT_FOUND", "contract"),
        ({**NEW, "contract_id": to_global_id("Invoice", 1)}, 404, "NOT_FOUND", "contract"),
        ({**NEW, "customer_id": to_global_id("Customer", 2)}, 404, "NOT_FOUND", "customer"),
    ],
)
async def test_refused_tickets_write_nothing(client, tokens, body, status, code, message):
    if body.get("contract_id") == BOBS_CONTRACT:
        async with _db(client).connect() as conn:
            contract = await conn.scalar(select(Contract.id).where(Contract.customer_id == 2))
        body = {**body, "contract_id": to_global_id("Contract", contract)}
    before = await _counts(client)
    response = await client.post("/support/tickets", json=body, headers=_auth(tokens["alice"]))
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], message in error["message"]) == (code, True), error
    _conforms(await _document(client), "/support/tickets", "post", response)
    assert await _counts(client) == before


async def test_a_forged_cross_site_post_is_refused_before_anything(client, tokens):
    before = await _counts(client)
    for path in ("/support/tickets", f"/support/tickets/{to_global_id('Ticket', 1)}/messages"):
        response = await client.post(
            path,
            content="category=other&subject=x&body=y",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 400, path
        assert response.json()["error"]["code"] == "CSRF_REJECTED"
        # With the token a JSON body is still required.
        response = await client.post(
            path,
            content="{}",
            headers={**_auth(tokens["alice"]), "Content-Type": "text/plain"},
        )
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "BAD_USER_INPUT"
    assert await _counts(client) == before


async def test_the_thread_by_rest_holds_internal_notes_for_staff_only(client, tokens):
    alice, operator = tokens["alice"], tokens["operator"]
    ticket = (await _open(client, alice))["ticket"]["id"]
    note = await graphql(
        client,
        NOTE.replace("$t: ID!)", "$t: ID!, $b: String!)"),
        {"t": ticket, "b": "Line card fault?"},
        operator,
    )
    assert "errors" not in note, note
    reply = await client.post(
        f"/support/tickets/{ticket}/messages",
        json={"body": "We are on it."},
        headers=_auth(operator),
    )
    assert reply.status_code == 201, reply.text
    _conforms(await _document(client), "/support/tickets/{id}/messages", "post", reply)
    # Support's first answer opens the ticket.
    assert reply.json()["ticket"]["status"] == "open"
    assert reply.json()["ticket"]["first_response_at"] is not None
    assert reply.json()["message"]["author_kind"] == "operator"

    def thread(response: httpx.Response) -> list[tuple[str, bool]]:
        assert response.status_code == 200, response.text
        return [(m["body"], m["internal"]) for m in response.json()["messages"]]

    path = f"/support/tickets/{ticket}"
    assert thread(await client.get(path, headers=_auth(alice))) == [
        ("Since 8 am.", False),
        ("We are on it.", False),
    ]
    assert thread(await client.get(path, headers=_auth(operator))) == [
        ("Since 8 am.", False),
        ("Line card fault?", True),
        ("We are on it.", False),
    ]


async def test_another_customers_ticket_is_not_found_and_nothing_is_written(client, tokens):
    ticket = (await _open(client, tokens["alice"]))["ticket"]["id"]
    bob = _auth(tokens["bob"])
    before = await _counts(client)
    for response in (
        await client.get(f"/support/tickets/{ticket}", headers=bob),
        await client.post(f"/support/tickets/{ticket}/messages", json={"body": "hi"}, headers=bob),
        await client.get(f"/support/tickets/{to_global_id('Ticket', 10**6)}", headers=bob),
        await client.get(f"/support/tickets/{to_global_id('Invoice', 1)}", headers=bob),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "NOT_FOUND"
    response = await client.get("/support/tickets/x", headers=bob)
    assert (response.status_code, response.json()["error"]["code"]) == (400, "BAD_USER_INPUT")
    assert await _counts(client) == before


async def test_refused_messages_write_nothing(client, tokens):
    alice = _auth(tokens["alice"])
    ticket = (await _open(client, tokens["alice"]))["ticket"]["id"]
    path = f"/support/tickets/{ticket}/messages"
    before = await _counts(client)
    for body, status, code in [
        ({"body": "   "}, 400, "BAD_USER_INPUT"),
        ({"body": "x" * 10_001}, 400, "BAD_USER_INPUT"),
        ({}, 400, "BAD_USER_INPUT"),
        ({"body": ["hello"]}, 400, "BAD_USER_INPUT"),
    ]:
        response = await client.post(path, json=body, headers=alice)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), body
    assert await _counts(client) == before
    async with _db(client).transaction() as session:
        await session.execute(update(Ticket).values(status=TicketStatus.CLOSED))
    before = await _counts(client)
    response = await client.post(path, json={"body": "Still broken"}, headers=alice)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "TICKET_CLOSED"
    _conforms(await _document(client), "/support/tickets/{id}/messages", "post", response)
    assert await _counts(client) == before


async def test_a_path_answers_405_with_every_method_it_has(client, tokens):
    response = await client.request("PUT", "/support/tickets", headers=_auth(tokens["alice"]))
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}
    assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
