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


async def test_the_database_refuses_to_change_or_delete_audit_rows(client: httpx.AsyncClient):
    db = _db(client)
    admin = await login(client, "admin@example.com")
    await graphql(client, "mutation { logoutEverywhere }", token=admin)
    assert await _count(client, AuditEntry) >= 1
    for statement in ("UPDATE audit_log SET outcome = 'OK'", "DELETE FROM audit_log"):
        with pytest.raises(Exception, match="append-only"):
            async with db.connect() as conn:
                await conn.execute(text(statement))


async def _user_id(client: httpx.AsyncClient, token: str) -> str:
    return (await graphql(client, "{ me { id } }", token=token))["data"]["me"]["id"]


async def _alice(client: httpx.AsyncClient, admin: str) -> str:
    body = await graphql(
        client, '{ customers(search: "alice@example.com") { edges { node { id } } } }', token=admin
    )
    return body["data"]["customers"]["edges"][0]["node"]["id"]


def _changes_of(entry: dict, table: str) -> list[dict]:
    return [change for change in entry["changes"] if change["table"] == table]


async def _one_new(client: httpx.AsyncClient, admin: str, operation: str, count: int) -> dict:
    """The one row `operation` left since there were `count` of it."""
    entries = await _entries(client, admin, operation=operation)
    assert len(entries) == count + 1, entries
    entry = entries[0]
    assert entry["outcome"] == "OK"
    assert entry["sessionId"] is not None
    assert entry["clientAddress"] == "127.0.0.1"
    return entry


async def test_a_role_change_records_the_user_before_and_after(client: httpx.AsyncClient):
    admin = await login(client, "admin@example.com")
    operator_id = await _user_id(client, await login(client, "operator@example.com"))
    count = len(await _entries(client, admin, operation="Mutation.updateUser"))
    body = await graphql(
        client,
        "mutation($id: ID!) { updateUser(id: $id, role: ADMIN) { role } }",
        {"id": operator_id},
        admin,
    )
    assert "errors" not in body, body
    entry = await _one_new(client, admin, "Mutation.updateUser", count)
    assert entry["actor"] == {"email": "admin@example.com"}
    [user] = [c for c in _changes_of(entry, "users") if c["op"] == "update"]
    assert (user["before"]["role"], user["after"]["role"]) == ("operator", "admin")
    assert user["after"]["email"] == "operator@example.com"
    assert user["before"]["password_hash"] == user["after"]["password_hash"] == "[redacted]"


async def test_a_ticket_assignment_records_the_ticket_before_and_after(
    client: httpx.AsyncClient,
):
    admin = await login(client, "admin@example.com")
    operator_id = await _user_id(client, await login(client, "operator@example.com"))
    save = "mutation($u: ID!) { saveSupportOperator(userId: $u, skills: [BILLING]) { capacity } }"
    admin_id = await _user_id(client, admin)
    for user_id in (operator_id, admin_id):
        assert "errors" not in await graphql(client, save, {"u": user_id}, admin)
    alice = await login(client, "alice@example.com")
    create = 'mutation { createTicket(input: {category: BILLING, subject: "Twice",'
    create += ' body: "Charged twice"}) { id } }'
    ticket = (await graphql(client, create, token=alice))["data"]["createTicket"]["id"]
    count = len(await _entries(client, admin, operation="Mutation.assignTicket"))
    assign = "mutation($t: ID!, $o: ID!) { assignTicket(ticketId: $t, operatorId: $o) { id } }"
    # Whoever the desk gave it to, staff hand it to the other.
    view = "query($t: ID!) { ticket(id: $t) { assignee { id } } }"
    assignee = (await graphql(client, view, {"t": ticket}, admin))["data"]["ticket"]["assignee"]
    target = admin_id if assignee == {"id": operator_id} else operator_id
    body = await graphql(client, assign, {"t": ticket, "o": target}, admin)
    assert "errors" not in body, body
    entry = await _one_new(client, admin, "Mutation.assignTicket", count)
    assert entry["customerId"] == await _alice(client, admin)
    [row] = [c for c in _changes_of(entry, "tickets") if c["op"] == "update"]
    assert row["before"]["assignee_id"] != row["after"]["assignee_id"]
    assert row["after"]["assignee_id"] is not None


async def test_a_tariff_change_by_staff_records_the_subscription(client: httpx.AsyncClient):
    alice = await login(client, "alice@example.com")
    body = await graphql(client, "{ me { customer { subscriptions { id } } } }", token=alice)
    subscription = body["data"]["me"]["customer"]["subscriptions"][0]["id"]
    query = "query($s: ID!) { availableTariffs(subscriptionId: $s) { id } }"
    tariff = (await graphql(client, query, {"s": subscription}, alice))["data"]
    tariff = tariff["availableTariffs"][0]["id"]
    admin = await login(client, "admin@example.com")
    count = len(await _entries(client, admin, operation="Mutation.changeTariff"))
    change = "mutation($s: ID!, $t: ID!) { changeTariff(subscriptionId: $s, tariffId: $t,"
    change += " when: PERIOD_END) { scheduled } }"
    body = await graphql(client, change, {"s": subscription, "t": tariff}, admin)
    assert "errors" not in body, body
    entry = await _one_new(client, admin, "Mutation.changeTariff", count)
    assert entry["customerId"] == await _alice(client, admin)
    assert entry["arguments"]["when"] == "period_end"
    assert _changes_of(entry, "subscription_tariffs"), entry["changes"]
    # Alice's own change is hers: no row.
    cancel = "mutation($s: ID!) { cancelTariffChange(subscriptionId: $s) { id } }"
    assert "errors" not in await graphql(client, cancel, {"s": subscription}, alice)
    assert not await _entries(client, admin, operation="Mutation.cancelTariffChange")


async def test_a_staff_rest_call_is_recorded_as_its_route(client: httpx.AsyncClient):
    operator = await login(client, "operator@example.com")
    admin = await login(client, "admin@example.com")
    alice = await _alice(client, admin)
    count = len(await _entries(client, admin, operation="POST /billing/promised-payment"))
    response = await client.post(
        "/billing/promised-payment",
        json={"amount": "10.00", "customer_id": alice},
        headers={"Authorization": f"Bearer {operator}"},
    )
    entries = await _entries(client, admin, operation="POST /billing/promised-payment")
    assert len(entries) == count + 1
    entry = entries[0]
    assert entry["actor"] == {"email": "operator@example.com"}
    assert entry["arguments"]["body"]["amount"] == "10.00"
    if response.status_code < 300:
        assert entry["outcome"] == "OK"
        assert entry["customerId"] == alice
        assert _changes_of(entry, "promised_payments")
    else:
        assert entry["outcome"] == "REFUSED"
        assert entry["errorCode"] == response.json()["code"], response.text


def test_secrets_never_reach_the_log():
    from domains.audit.log import redacted

    assert redacted({"password": "p", "new_password": "q", "input": {"card_token": "t"}}) == {
        "password": "[redacted]",
        "new_password": "[redacted]",
        "input": {"card_token": "[redacted]"},
    }
