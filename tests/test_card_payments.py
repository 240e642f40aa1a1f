"""Card top-ups and card payments of invoices through the sandbox acquirer, end to end.

The sandbox provider and Kabinet both run as real HTTP servers: Kabinet creates the
provider's payment over HTTP, the sandbox sends its signed webhook back over HTTP. The
module has a PostgreSQL database of its own, so `reconcile` over all of it must hold.
"""

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import func, select, update

from adapters.acquirer_client import SandboxProvider
from adapters.sandbox_acquirer import create_sandbox_app
from domains.billing.card import Acquiring, top_up_balance
from domains.billing.models import (
    InvoiceStatus,
    Payment,
    PaymentMethod,
    PaymentStatus,
    ProviderEvent,
    Transaction,
)
from domains.billing.reconcile import reconcile
from domains.billing.webhook import signature
from domains.database import Database
from domains.errors import DomainError
from domains.identity.models import User
from domains.identity.passwords import hash_password
from domains.identity.viewer import Viewer
from gateway.app import create_app
from tests.conftest import graphql, login, make_settings, migrated_database
from tests.servers import free_socket, serve, url_of
from tests.test_payments import (
    balance_of,
    events_of,
    invoice_status,
    make_customer,
    pay,
    snapshot,
)

pytestmark = pytest.mark.postgres

SECRET = "whsec-test-0123456789"
PASSWORD = "card-test-password-1"


@dataclass(frozen=True)
class Servers:
    app_url: str
    sandbox_url: str
    acquiring: Acquiring

    @property
    def webhook_url(self) -> str:
        return f"{self.app_url}/webhooks/payments/sandbox"


@pytest_asyncio.fixture(scope="module")
async def card_pg_url() -> AsyncIterator[str]:
    async with migrated_database("kabinet_card") as url:
        yield url


@pytest_asyncio.fixture
async def db(card_pg_url: str) -> AsyncIterator[Database]:
    database = Database(card_pg_url)
    yield database
    await database.dispose()


@pytest.fixture
def servers(card_pg_url: str, signing_key: bytes) -> Iterator[Servers]:
    app_socket, sandbox_socket = free_socket(), free_socket()
    app_url, sandbox_url = url_of(app_socket), url_of(sandbox_socket)
    sandbox = create_sandbox_app(f"{app_url}/webhooks/payments/sandbox", SECRET.encode())
    settings = make_settings(
        card_pg_url,
        signing_key,
        payment_provider_url=sandbox_url,
        payment_webhook_secret=SECRET,
        payment_return_url="https://kabinet.example/billing",
        # No consumers beside: what a payment writes is all these tests look at (a
        # notification planned meanwhile would be a change the redelivery did not make).
        worker_in_process="false",
    )
    with serve(sandbox, sandbox_socket), serve(create_app(settings), app_socket):
        acquiring = Acquiring(SandboxProvider(sandbox_url), "https://kabinet.example/billing")
        yield Servers(app_url, sandbox_url, acquiring)


async def sandbox_post(servers: Servers, path: str) -> dict:
    async with httpx.AsyncClient(base_url=servers.sandbox_url) as http:
        response = await http.post(path)
    assert response.status_code == 200, response.text
    return response.json()


async def provider_payment_id(db: Database, payment_id: int) -> str:
    async with db.connect() as conn:
        stmt = select(Payment.provider_payment_id).where(Payment.id == payment_id)
        return (await conn.execute(stmt)).scalar_one()


async def payment_status(db: Database, payment_id: int) -> PaymentStatus:
    async with db.connect() as conn:
        stmt = select(Payment.status).where(Payment.id == payment_id)
        return (await conn.execute(stmt)).scalar_one()


async def entries_of(db: Database, payment_id: int) -> int:
    async with db.connect() as conn:
        stmt = select(func.count()).where(Transaction.payment_id == payment_id)
        return (await conn.execute(stmt)).scalar_one()


async def top_up(db: Database, servers: Servers, viewer: Viewer, amount: str, key: str):
    return await top_up_balance(
        db, servers.acquiring, viewer, amount=Decimal(amount), idempotency_key=key
    )


TOP_UP = """
mutation($amount: Decimal!, $key: String!) {
  topUpBalance(amount: $amount, idempotencyKey: $key) {
    payment { id status method amount { amount } invoice { id } }
    confirmationUrl
    customer { balance { amount } }
  }
}
"""


async def test_top_up_end_to_end_credits_once(db: Database, servers: Servers):
    viewer, _ = await make_customer(db, "10.00", [])
    async with db.transaction() as session:
        email = (
            await session.execute(select(User.email).where(User.id == viewer.user_id))
        ).scalar_one()
        await session.execute(
            update(User)
            .where(User.id == viewer.user_id)
            .values(password_hash=hash_password(PASSWORD))
        )
    async with httpx.AsyncClient(base_url=servers.app_url) as http:
        token = await login(http, email, PASSWORD)
        body = await graphql(http, TOP_UP, {"amount": "250.00", "key": "top-1"}, token)
    assert "errors" not in body, body
    started = body["data"]["topUpBalance"]
    assert started["payment"]["status"] == "PENDING"
    assert started["payment"]["method"] == "CARD"
    assert started["payment"]["invoice"] is None
    assert started["confirmationUrl"].startswith(f"{servers.sandbox_url}/checkout/sbx_")
    assert started["customer"]["balance"]["amount"] == "10.00"
    assert await reconcile(db) == []

    payments = await _payments_of(db, viewer.customer_id)
    [payment_id] = payments
    settled = await sandbox_post(
        servers, f"/sandbox/payments/{await provider_payment_id(db, payment_id)}/succeed"
    )
    assert settled["webhook_status"] == 200
    assert await payment_status(db, payment_id) is PaymentStatus.SUCCEEDED
    assert await balance_of(db, viewer.customer_id) == Decimal("260.00")
    assert sorted(await events_of(db, viewer.customer_id)) == [
        "balance.changed",
        "payment.created",
    ]
    before = await snapshot(db)
    again = await sandbox_post(servers, f"/sandbox/events/{settled['event']['id']}/redeliver")
    assert again["webhook_status"] == 200
    assert await snapshot(db) == before
    assert await balance_of(db, viewer.customer_id) == Decimal("260.00")
    assert await reconcile(db) == []


async def _payments_of(db: Database, customer_id: int) -> list[int]:
    """The customer's payments started at the acquirer (not `make_customer`'s opening one)."""
    async with db.connect() as conn:
        stmt = (
            select(Payment.id)
            .where(Payment.customer_id == customer_id, Payment.provider.is_not(None))
            .order_by(Payment.id)
        )
        return list((await conn.execute(stmt)).scalars())


async def test_concurrent_redeliveries_credit_once(db: Database, servers: Servers):
    viewer, _ = await make_customer(db, "0", [])
    started = await top_up(db, servers, viewer, "75.50", "conc")
    provider_id = await provider_payment_id(db, started.payment_id)
    settled = await sandbox_post(servers, f"/sandbox/payments/{provider_id}/succeed")
    event_id = settled["event"]["id"]
    answers = await asyncio.gather(
        *(sandbox_post(servers, f"/sandbox/events/{event_id}/redeliver") for _ in range(20))
    )
    assert {a["webhook_status"] for a in answers} == {200}
    # A second, different event for the payment changes nothing either.
    other = await sandbox_post(servers, f"/sandbox/payments/{provider_id}/succeed")
    assert other["webhook_status"] == 200
    assert await balance_of(db, viewer.customer_id) == Decimal("75.50")
    assert await entries_of(db, started.payment_id) == 2
    async with db.connect() as conn:
        stmt = select(func.count()).where(ProviderEvent.payment_id == started.payment_id)
        assert (await conn.execute(stmt)).scalar_one() == 2
    assert await reconcile(db) == []


async def test_concurrent_first_deliveries_credit_once(db: Database, servers: Servers):
    """The same event arriving twenty times at once, none of them first."""
    viewer, _ = await make_customer(db, "0", [])
    started = await top_up(db, servers, viewer, "12.00", "first")
    body = _event("evt-concurrent", await provider_payment_id(db, started.payment_id), "12.00")
    statuses = await asyncio.gather(*(_deliver(servers, body) for _ in range(20)))
    assert {s.status_code for s in statuses} == {200}
    assert sorted(s.json()["status"] for s in statuses) == ["duplicate"] * 19 + ["ok"]
    assert await balance_of(db, viewer.customer_id) == Decimal("12.00")
    assert await reconcile(db) == []


def _event(event_id: str, provider_id: str, amount: str, type: str = "payment.succeeded") -> bytes:
    event = {
        "id": event_id,
        "type": type,
        "object": {
            "id": provider_id,
            "status": "succeeded",
            "amount": {"value": amount, "currency": "RUB"},
        },
    }
    return json.dumps(event).encode()


async def _deliver(
    servers: Servers,
    body: bytes,
    *,
    secret: str = SECRET,
    timestamp: str | None = None,
    signed_body: bytes | None = None,
) -> httpx.Response:
    timestamp = timestamp or str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "Webhook-Timestamp": timestamp,
        "Webhook-Signature": signature(secret.encode(), timestamp, signed_body or body),
    }
    async with httpx.AsyncClient() as http:
        return await http.post(servers.webhook_url, content=body, headers=headers)


async def test_bad_signatures_are_refused_without_effect(db: Database, servers: Servers):
    viewer, _ = await make_customer(db, "0", [])
    started = await top_up(db, servers, viewer, "40.00", "sig")
    provider_id = await provider_payment_id(db, started.payment_id)
    body = _event("evt-sig", provider_id, "40.00")
    before = await snapshot(db)
    stale = str(int(time.time()) - 6 * 60)
    refused = [
        await _deliver(servers, body, secret="not-the-secret"),
        await _deliver(servers, _event("evt-sig", provider_id, "4000.00"), signed_body=body),
        await _deliver(servers, body, timestamp=stale),
        await _deliver(servers, body, timestamp="yesterday"),
    ]
    async with httpx.AsyncClient() as http:
        unsigned = await http.post(
            servers.webhook_url, content=body, headers={"Content-Type": "application/json"}
        )
    for response in [*refused, unsigned]:
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "UNAUTHENTICATED"
    assert await snapshot(db) == before
    assert await payment_status(db, started.payment_id) is PaymentStatus.PENDING

    accepted = await _deliver(servers, body)
    assert accepted.status_code == 200, accepted.text
    assert await balance_of(db, viewer.customer_id) == Decimal("40.00")
    assert await reconcile(db) == []


async def test_card_invoice_payment_is_paid_when_the_webhook_confirms(
    db: Database, servers: Servers
):
    viewer, [invoice] = await make_customer(db, "5.00", [("300.00", InvoiceStatus.ISSUED)])
    result = await pay(db, viewer, invoice, None, "card-1", PaymentMethod.CARD, servers.acquiring)
    assert not result.replayed
    assert await payment_status(db, result.payment_id) is PaymentStatus.PENDING
    assert await invoice_status(db, invoice) is InvoiceStatus.ISSUED
    assert await entries_of(db, result.payment_id) == 0
    assert await events_of(db, viewer.customer_id) == []
    assert await reconcile(db) == []
    retry = await pay(db, viewer, invoice, None, "card-1", PaymentMethod.CARD, servers.acquiring)
    assert (retry.payment_id, retry.replayed) == (result.payment_id, True)

    provider_id = await provider_payment_id(db, result.payment_id)
    settled = await sandbox_post(servers, f"/sandbox/payments/{provider_id}/succeed")
    assert settled["webhook_status"] == 200
    assert await payment_status(db, result.payment_id) is PaymentStatus.SUCCEEDED
    assert await invoice_status(db, invoice) is InvoiceStatus.PAID
    assert await balance_of(db, viewer.customer_id) == Decimal("5.00")
    assert await entries_of(db, result.payment_id) == 2
    assert sorted(await events_of(db, viewer.customer_id)) == ["invoice.paid", "payment.created"]
    assert await reconcile(db) == []


async def test_card_payment_of_an_invoice_paid_meanwhile_lands_on_the_balance(
    db: Database, servers: Servers
):
    viewer, [invoice] = await make_customer(db, "100.00", [("100.00", InvoiceStatus.ISSUED)])
    card = await pay(db, viewer, invoice, None, "late-card", PaymentMethod.CARD, servers.acquiring)
    await pay(db, viewer, invoice, None, "balance")
    assert await balance_of(db, viewer.customer_id) == Decimal("0.00")
    provider_id = await provider_payment_id(db, card.payment_id)
    settled = await sandbox_post(servers, f"/sandbox/payments/{provider_id}/succeed")
    assert settled["webhook_status"] == 200
    assert await invoice_status(db, invoice) is InvoiceStatus.PAID
    assert await balance_of(db, viewer.customer_id) == Decimal("100.00")
    async with db.connect() as conn:
        stmt = select(Payment.invoice_id).where(Payment.id == card.payment_id)
        assert (await conn.execute(stmt)).scalar_one() is None
    assert await reconcile(db) == []


async def test_failed_payment_credits_nothing(db: Database, servers: Servers):
    viewer, _ = await make_customer(db, "1.00", [])
    started = await top_up(db, servers, viewer, "99.00", "fail")
    provider_id = await provider_payment_id(db, started.payment_id)
    settled = await sandbox_post(servers, f"/sandbox/payments/{provider_id}/fail")
    assert settled["webhook_status"] == 200
    assert settled["event"]["type"] == "payment.canceled"
    assert await payment_status(db, started.payment_id) is PaymentStatus.FAILED
    assert await balance_of(db, viewer.customer_id) == Decimal("1.00")
    assert await entries_of(db, started.payment_id) == 0
    assert await events_of(db, viewer.customer_id) == []
    # A success reported after the failure does not revive the payment.
    late = await _deliver(servers, _event("evt-late", provider_id, "99.00"))
    assert late.status_code == 200
    assert await balance_of(db, viewer.customer_id) == Decimal("1.00")
    assert await reconcile(db) == []


async def test_top_up_idempotency_key(db: Database, servers: Servers):
    viewer, _ = await make_customer(db, "0", [])
    first = await top_up(db, servers, viewer, "20.00", "same")
    again = await top_up(db, servers, viewer, "20.00", "same")
    assert not first.replayed
    assert again.replayed
    assert (again.payment_id, again.confirmation_url) == (first.payment_id, first.confirmation_url)
    assert await _payments_of(db, viewer.customer_id) == [first.payment_id]
    before = await snapshot(db)
    with pytest.raises(DomainError) as refused:
        await top_up(db, servers, viewer, "21.00", "same")
    assert refused.value.code == "IDEMPOTENCY_KEY_REUSED"
    for amount, code in (("0", "INVALID_AMOUNT"), ("1.001", "INVALID_AMOUNT")):
        with pytest.raises(DomainError) as invalid:
            await top_up(db, servers, viewer, amount, "other")
        assert invalid.value.code == code
    assert await snapshot(db) == before
    concurrent = await asyncio.gather(
        *(top_up(db, servers, viewer, "30.00", "together") for _ in range(10))
    )
    assert len({c.payment_id for c in concurrent}) == 1
    assert sorted(c.replayed for c in concurrent) == [False] + [True] * 9
    assert len(await _payments_of(db, viewer.customer_id)) == 2
    assert await reconcile(db) == []


async def test_without_a_provider_card_payments_are_unavailable(db: Database):
    viewer, _ = await make_customer(db, "0", [])
    with pytest.raises(DomainError) as refused:
        await top_up_balance(db, None, viewer, amount=Decimal("5.00"), idempotency_key="x")
    assert refused.value.code == "PAYMENT_METHOD_UNAVAILABLE"
