"""The audit log: staff mutations (GraphQL and REST) recorded in their own unit of work,
with who, where, what and the rows changed; refusals recorded alone; append-only."""

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import func, select, text

from domains.audit.models import AuditEntry
from domains.outbox import OutboxEvent
from gateway.app import create_app
from tests.conftest import app_client, graphql, load_demo_into, login, make_settings
from tests.conftest import migrated_database as migrated

AUDIT = """
query($actor: ID, $operation: String, $customer: ID, $first: Int) {
  auditLog(actorId: $actor, operation: $operation, customerId: $customer, first: $first) {
    edges { node { recordedAt actor { email } actorRole sessionId clientAddress operation
      arguments outcome errorCode customerId changes } }
    pageInfo { hasNextPage }
  }
}
"""
REFUND = """
mutation($p: ID!, $k: String!) {
  refundPayment(paymentId: $p, amount: "5.00", reason: "outage", idempotencyKey: $k) {
    payment { refundedAmount { amount } }
  }
}
"""


@pytest_asyncio.fixture(scope="module")
async def pg_audit_url() -> AsyncIterator[str]:
    async with migrated("kabinet_audit") as url:
        await load_demo_into(url)
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def audit_url(request: pytest.FixtureRequest) -> str:
    """The demo on a database of each kind of its own: these tests write."""
    name = "sqlite_demo_copy" if request.param == "sqlite" else "pg_audit_url"
    return request.getfixturevalue(name)


@pytest_asyncio.fixture
async def client(audit_url: str, signing_key: bytes) -> AsyncIterator[httpx.AsyncClient]:
    async for http in app_client(create_app(make_settings(audit_url, signing_key))):
        yield http


def _db(client: httpx.AsyncClient):
    return client._transport.app.state.services.db  # type: ignore[attr-defined]


async def _count(client: httpx.AsyncClient, table) -> int:
    async with _db(client).connect() as conn:
        return await conn.scalar(select(func.count()).select_from(table))


async def _entries(client: httpx.AsyncClient, admin: str, **filters) -> list[dict]:
    body = await graphql(client, AUDIT, {"first": 50, **filters}, admin)
    assert "errors" not in body, body
    return [edge["node"] for edge in body["data"]["auditLog"]["edges"]]


async def _paid_payment(client: httpx.AsyncClient) -> str:
    alice = await login(client, "alice@example.com")
    query = "{ invoices(status: [PAID], first: 1) { edges { node { payments { id } } } } }"
    body = await graphql(client, query, token=alice)
    return body["data"]["invoices"]["edges"][0]["node"]["payments"][0]["id"]


async def _session_of(client: httpx.AsyncClient, token: str) -> str:
    body = await graphql(client, "{ mySessions { id current } }", token=token)
    return next(s["id"] for s in body["data"]["mySessions"] if s["current"])


async def test_a_staff_refund_leaves_one_row_with_its_changes(client: httpx.AsyncClient):
    payment = await _paid_payment(client)
    admin = await login(client, "admin@example.com")
    before = await _entries(client, admin)
    body = await graphql(client, REFUND, {"p": payment, "k": "audit-1"}, admin)
    assert "errors" not in body, body
    entries = await _entries(client, admin)
    assert len(entries) == len(before) + 1
    entry = entries[0]
    assert entry["operation"] == "Mutation.refundPayment"
    assert entry["actor"] == {"email": "admin@example.com"}
    assert entry["actorRole"] == "admin"
    assert entry["sessionId"] == await _session_of(client, admin)
    assert entry["clientAddress"] == "127.0.0.1"
    assert entry["outcome"] == "OK"
    assert entry["errorCode"] is None
    assert entry["arguments"]["amount"] == "5.00"
    assert entry["arguments"]["idempotency_key"] == "audit-1"
    assert entry["customerId"] is not None
    changed = {(change["table"], change["op"]) for change in entry["changes"]}
    assert ("refunds", "insert") in changed
    [payment_row] = [c for c in entry["changes"] if c["table"] == "payments"]
    assert payment_row["op"] == "update"
    assert payment_row["before"]["refunded_amount"] == "0.00"
    assert payment_row["after"]["refunded_amount"] == "5.00"


async def test_a_refused_staff_mutation_leaves_a_refused_row_and_nothing_else(
    client: httpx.AsyncClient,
):
    payment = await _paid_payment(client)
    admin = await login(client, "admin@example.com")
    events = await _count(client, OutboxEvent)
    rows = await _count(client, AuditEntry)
    body = await graphql(
        client, REFUND.replace('"5.00"', '"999999.00"'), {"p": payment, "k": "x"}, admin
    )
    code = body["errors"][0]["extensions"]["code"]
    assert await _count(client, OutboxEvent) == events
    assert await _count(client, AuditEntry) == rows + 1
    [entry] = await _entries(client, admin, first=1)
    assert (entry["outcome"], entry["errorCode"], entry["changes"]) == ("REFUSED", code, [])


async def test_a_customers_own_mutation_is_not_audited(client: httpx.AsyncClient):
    alice = await login(client, "alice@example.com")
    rows = await _count(client, AuditEntry)
    body = await graphql(
        client, 'mutation { updateMyProfile(fullName: "Alice Q") { fullName } }', token=alice
    )
    assert "errors" not in body, body
    assert await _count(client, AuditEntry) == rows


async def test_the_audit_log_is_for_admins(client: httpx.AsyncClient):
    for email in ("operator@example.com", "alice@example.com"):
        token = await login(client, email)
        body = await graphql(client, AUDIT, {}, token)
        assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]


@pytest.mark.postgres
async def test_postgres_refuses_to_change_or_delete_audit_rows(client: httpx.AsyncClient):
    db = _db(client)
    if db.is_sqlite:
        pytest.skip("the trigger is PostgreSQL's")
    admin = await login(client, "admin@example.com")
    await graphql(client, "mutation { logoutEverywhere }", token=admin)
    assert await _count(client, AuditEntry) >= 1
    for statement in ("UPDATE audit_log SET outcome = 'OK'", "DELETE FROM audit_log"):
        with pytest.raises(Exception, match="append-only"):
            async with db.connect() as conn:
                await conn.execute(text(statement))
