"""Card payments through the public API: GraphQL and REST against the running app, the
sandbox acquirer a real HTTP server too, its signed webhook coming back over HTTP.

The module has a PostgreSQL database of its own, so `reconcile` over all of it must hold.
"""

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select, update

from adapters.sandbox_acquirer import create_sandbox_app
from domains.billing.models import InvoiceStatus, Payment
from domains.billing.reconcile import reconcile
from domains.billing.webhook import signature
from domains.database import Database
from domains.identity.models import User
from domains.identity.passwords import hash_password
from domains.identity.viewer import Viewer
from gateway.app import create_app
from resolvers.relay import to_global_id
from tests.conftest import graphql, login, make_settings, migrated_database, statements
from tests.servers import free_socket, serve, url_of
from tests.test_payments import balance_of, invoice_status, make_customer, snapshot

pytestmark = pytest.mark.postgres

SECRET = "whsec-http-0123456789"
PASSWORD = "card-http-password-1"


@dataclass
class Kabinet:
    """The running app (and, when card payments are on, the sandbox) and a signed-in
    customer of it."""

    url: str
    sandbox_url: str | None
    http: httpx.AsyncClient
    app: object
    viewer: Viewer | None = None
    token: str | None = None

    async def sign_in(self, db: Database, balance: str, invoices: list[str]) -> list[int]:
        self.viewer, invoice_ids = await make_customer(
            db, balance, [(amount, InvoiceStatus.ISSUED) for amount in invoices]
        )
        async with db.transaction() as session:
            stmt = (
                update(User)
                .where(User.id == self.viewer.user_id)
                .values(password_hash=hash_password(PASSWORD))
                .returning(User.email)
            )
            email = (await session.execute(stmt)).scalar_one()
        self.token = await login(self.http, email, PASSWORD)
        return invoice_ids

    async def graphql(self, query: str, variables: dict[str, object]) -> dict:
        return await graphql(self.http, query, variables, self.token)

    async def rest_pay(self, body: dict[str, object], key: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}", "Idempotency-Key": key}
        return await self.http.post("/billing/pay", json=body, headers=headers)

    async def sandbox(self, path: str) -> dict:
        async with httpx.AsyncClient(base_url=self.sandbox_url) as http:
            response = await http.post(path)
        assert response.status_code == 200, response.text
        return response.json()

    async def confirm(self, confirmation_url: str) -> dict:
        """The payer confirms at the checkout page: the sandbox sends its webhook."""
        provider_id = confirmation_url.rsplit("/", 1)[1]
        return await self.sandbox(f"/sandbox/payments/{provider_id}/succeed")


@pytest_asyncio.fixture(scope="module")
async def card_http_pg_url() -> AsyncIterator[str]:
    async with migrated_database("kabinet_card_http") as url:
        yield url


@pytest_asyncio.fixture
async def db(card_http_pg_url: str) -> AsyncIterator[Database]:
    database = Database(card_http_pg_url)
    yield database
    await database.dispose()


@pytest.fixture
def running(card_http_pg_url: str, signing_key: bytes) -> Iterator[tuple[str, str, object]]:
    app_socket, sandbox_socket = free_socket(), free_socket()
    app_url = url_of(app_socket)
    sandbox = create_sandbox_app(f"{app_url}/webhooks/payments/sandbox", SECRET.encode())
    settings = make_settings(
        card_http_pg_url,
        signing_key,
        payment_provider_url=url_of(sandbox_socket),
        payment_webhook_secret=SECRET,
        payment_return_url="https://kabinet.example/billing",
        # No relay or consumers in the server: statements() counts the requests' SQL only.
        worker_in_process=False,
    )
    app = create_app(settings)
    with serve(sandbox, sandbox_socket) as sandbox_url, serve(app, app_socket):
        yield app_url, sandbox_url, app


@pytest_asyncio.fixture
async def kabinet(running: tuple[str, str, object]) -> AsyncIterator[Kabinet]:
    app_url, sandbox_url, app = running
    async with httpx.AsyncClient(base_url=app_url) as http:
        yield Kabinet(app_url, sandbox_url, http, app)


@pytest_asyncio.fixture
async def without_provider(card_http_pg_url: str, signing_key: bytes) -> AsyncIterator[Kabinet]:
    app_socket = free_socket()
    app = create_app(make_settings(card_http_pg_url, signing_key))
    with serve(app, app_socket) as app_url:
        async with httpx.AsyncClient(base_url=app_url) as http:
            yield Kabinet(app_url, None, http, app)


TOP_UP = """
mutation($amount: Decimal!, $key: String!) {
  topUpBalance(amount: $amount, idempotencyKey: $key) {
    payment { id status method amount { amount } }
    confirmationUrl
    customer { balance { amount } }
  }
}
"""

PAY = """
mutation($input: PayInvoiceInput!) {
  payInvoice(input: $input) {
    payment { id status method amount { amount } confirmationUrl }
    invoice { status amountDue { amount } }
    customer { balance { amount } }
  }
}
"""

STATE = """
query($payment: ID!) {
  node(id: $payment) { ... on Payment { status invoice { status amountDue { amount } } } }
  me { customer { balance { amount } } }
}
"""

HISTORY = """
query($first: Int!) {
  balanceHistory(first: $first) {
    edges { node { type amount { amount currency } balanceAfter { amount currency } } }
  }
}
"""


async def _state(kabinet: Kabinet, payment_id: str) -> dict:
    body = await kabinet.graphql(STATE, {"payment": payment_id})
    assert "errors" not in body, body
    return body["data"]


async def test_top_up_over_graphql_is_credited_once(db: Database, kabinet: Kabinet):
    await kabinet.sign_in(db, "10.00", [])
    body = await kabinet.graphql(TOP_UP, {"amount": "250.00", "key": str(uuid.uuid4())})
    assert "errors" not in body, body
    started = body["data"]["topUpBalance"]
    assert started["payment"]["status"] == "PENDING"
    assert started["payment"]["method"] == "CARD"
    assert started["confirmationUrl"].startswith(f"{kabinet.sandbox_url}/checkout/sbx_")
    assert started["customer"]["balance"]["amount"] == "10.00"

    settled = await kabinet.confirm(started["confirmationUrl"])
    assert settled["webhook_status"] == 200
    state = await _state(kabinet, started["payment"]["id"])
    assert state["node"] == {"status": "SUCCEEDED", "invoice": None}
    assert state["me"]["customer"]["balance"]["amount"] == "260.00"

    before = await snapshot(db)
    again = await kabinet.sandbox(f"/sandbox/events/{settled['event']['id']}/redeliver")
    assert again["webhook_status"] == 200
    assert await snapshot(db) == before
    state = await _state(kabinet, started["payment"]["id"])
    assert state["me"]["customer"]["balance"]["amount"] == "260.00"
    assert await reconcile(db) == []


async def test_invoice_paid_by_card_over_graphql_is_paid_once(db: Database, kabinet: Kabinet):
    [invoice] = await kabinet.sign_in(db, "5.00", ["300.00"])
    variables = {
        "input": {
            "invoiceId": to_global_id("Invoice", invoice),
            "method": "CARD",
            "idempotencyKey": str(uuid.uuid4()),
        }
    }
    body = await kabinet.graphql(PAY, variables)
    assert "errors" not in body, body
    started = body["data"]["payInvoice"]
    assert started["payment"]["status"] == "PENDING"
    assert started["payment"]["amount"]["amount"] == "300.00"
    assert started["payment"]["confirmationUrl"].startswith(f"{kabinet.sandbox_url}/checkout/")
    assert started["invoice"] == {"status": "ISSUED", "amountDue": {"amount": "300.00"}}
    assert (await kabinet.graphql(PAY, variables))["data"]["payInvoice"]["payment"] == (
        started["payment"]
    )

    settled = await kabinet.confirm(started["payment"]["confirmationUrl"])
    assert settled["webhook_status"] == 200
    paid = {"status": "SUCCEEDED", "invoice": {"status": "PAID", "amountDue": {"amount": "0.00"}}}
    state = await _state(kabinet, started["payment"]["id"])
    assert state["node"] == paid
    assert state["me"]["customer"]["balance"]["amount"] == "5.00"

    before = await snapshot(db)
    again = await kabinet.sandbox(f"/sandbox/events/{settled['event']['id']}/redeliver")
    assert again["webhook_status"] == 200
    assert await snapshot(db) == before
    assert (await _state(kabinet, started["payment"]["id"]))["node"] == paid
    assert await reconcile(db) == []


async def test_invoice_paid_by_card_over_rest_is_paid_once(db: Database, kabinet: Kabinet):
    [invoice] = await kabinet.sign_in(db, "0", ["120.00"])
    request = {"invoice_id": to_global_id("Invoice", invoice), "method": "card"}
    key = str(uuid.uuid4())
    created = await kabinet.rest_pay(request, key)
    assert created.status_code == 201, created.text
    payment = created.json()["payment"]
    assert (payment["status"], payment["method"]) == ("pending", "card")
    assert payment["amount"]["amount"] == "120.00"
    assert payment["confirmation_url"].startswith(f"{kabinet.sandbox_url}/checkout/")
    assert created.json()["invoice"]["status"] == "issued"
    retry = await kabinet.rest_pay(request, key)
    assert retry.status_code == 200
    assert retry.json()["payment"] == payment

    settled = await kabinet.confirm(payment["confirmation_url"])
    assert settled["webhook_status"] == 200
    assert await invoice_status(db, invoice) is InvoiceStatus.PAID
    before = await snapshot(db)
    again = await kabinet.sandbox(f"/sandbox/events/{settled['event']['id']}/redeliver")
    assert again["webhook_status"] == 200
    assert await snapshot(db) == before
    assert await balance_of(db, kabinet.viewer.customer_id) == Decimal("0.00")
    # The retry after settlement answers the payment as it is now.
    assert (await kabinet.rest_pay(request, key)).json()["payment"]["status"] == "succeeded"
    assert await reconcile(db) == []


async def test_a_bad_signature_gets_a_json_error_and_changes_nothing(
    db: Database, kabinet: Kabinet
):
    await kabinet.sign_in(db, "0", [])
    body = await kabinet.graphql(TOP_UP, {"amount": "40.00", "key": str(uuid.uuid4())})
    started = body["data"]["topUpBalance"]
    payment_pk = await _payment_pk(db, kabinet)
    async with db.connect() as conn:
        stmt = select(Payment.provider_payment_id).where(Payment.id == payment_pk)
        provider_id = (await conn.execute(stmt)).scalar_one()
    event = {
        "id": "evt-forged",
        "type": "payment.succeeded",
        "object": {
            "id": provider_id,
            "status": "succeeded",
            "amount": {"value": "40.00", "currency": "RUB"},
        },
    }
    payload = json.dumps(event).encode()
    timestamp = str(int(time.time()))
    before = await snapshot(db)
    forged = await kabinet.http.post(
        "/webhooks/payments/sandbox",
        content=payload,
        headers={
            "Content-Type": "application/json",
            "Webhook-Timestamp": timestamp,
            "Webhook-Signature": signature(b"not-the-secret", timestamp, payload),
        },
    )
    assert forged.status_code == 401
    assert forged.headers["content-type"].startswith("application/json")
    assert forged.json()["error"]["code"] == "UNAUTHENTICATED"
    not_json = b"{not json"
    malformed = await kabinet.http.post(
        "/webhooks/payments/sandbox",
        content=not_json,
        headers={
            "Content-Type": "application/json",
            "Webhook-Timestamp": timestamp,
            "Webhook-Signature": signature(SECRET.encode(), timestamp, not_json),
        },
    )
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "BAD_USER_INPUT"
    assert await snapshot(db) == before
    state = await _state(kabinet, started["payment"]["id"])
    assert state["node"]["status"] == "PENDING"
    assert state["me"]["customer"]["balance"]["amount"] == "0.00"


async def _payment_pk(db: Database, kabinet: Kabinet) -> int:
    async with db.connect() as conn:
        stmt = select(Payment.id).where(Payment.customer_id == kabinet.viewer.customer_id)
        return (await conn.execute(stmt)).scalar_one()


async def test_card_is_refused_when_no_provider_is_configured(
    db: Database, without_provider: Kabinet
):
    kabinet = without_provider
    [invoice] = await kabinet.sign_in(db, "50.00", ["30.00"])
    before = await snapshot(db)
    top_up = await kabinet.graphql(TOP_UP, {"amount": "10.00", "key": str(uuid.uuid4())})
    pay = await kabinet.graphql(
        PAY,
        {
            "input": {
                "invoiceId": to_global_id("Invoice", invoice),
                "method": "CARD",
                "idempotencyKey": str(uuid.uuid4()),
            }
        },
    )
    for body in (top_up, pay):
        assert body["data"] is None
        assert body["errors"][0]["extensions"]["code"] == "PAYMENT_METHOD_UNAVAILABLE"
    rest = await kabinet.rest_pay(
        {"invoice_id": to_global_id("Invoice", invoice), "method": "card"}, str(uuid.uuid4())
    )
    assert rest.status_code == 422
    assert rest.json()["error"]["code"] == "PAYMENT_METHOD_UNAVAILABLE"
    webhook = await kabinet.http.post("/webhooks/payments/sandbox", json={})
    assert webhook.status_code == 404
    assert webhook.json()["error"]["code"] == "NOT_FOUND"
    assert await snapshot(db) == before


async def test_balance_history_carries_the_running_balance(db: Database, kabinet: Kabinet):
    [invoice] = await kabinet.sign_in(db, "100.00", ["30.00"])
    for amount in ("25.50", "4.50"):
        body = await kabinet.graphql(TOP_UP, {"amount": amount, "key": str(uuid.uuid4())})
        assert (await kabinet.confirm(body["data"]["topUpBalance"]["confirmationUrl"]))[
            "webhook_status"
        ] == 200
    paid = await kabinet.rest_pay(
        {"invoice_id": to_global_id("Invoice", invoice), "method": "balance", "amount": "12.25"},
        str(uuid.uuid4()),
    )
    assert paid.status_code == 201, paid.text

    with statements(kabinet.app) as one_entry:
        first = await kabinet.graphql(HISTORY, {"first": 1})
    with statements(kabinet.app) as all_entries:
        history = await kabinet.graphql(HISTORY, {"first": 10})
    assert "errors" not in history, history
    rows = [
        (e["node"]["type"], e["node"]["amount"]["amount"], e["node"]["balanceAfter"]["amount"])
        for e in history["data"]["balanceHistory"]["edges"]
    ]
    assert rows == [
        ("DEBIT", "12.25", "117.75"),
        ("CREDIT", "4.50", "130.00"),
        ("CREDIT", "25.50", "125.50"),
        ("CREDIT", "100.00", "100.00"),
    ]
    assert (
        first["data"]["balanceHistory"]["edges"][0] == history["data"]["balanceHistory"]["edges"][0]
    )
    assert {
        e["node"]["balanceAfter"]["currency"] for e in history["data"]["balanceHistory"]["edges"]
    } == {"RUB"}
    assert await balance_of(db, kabinet.viewer.customer_id) == Decimal("117.75")
    # The running balance comes with the page: four entries cost what one does.
    assert len(all_entries) == len(one_entry)
