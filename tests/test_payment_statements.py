"""A balance payment sends a fixed number of statements, on PostgreSQL and SQLite: its
unit of work's (the writer's) and none to read its answer back."""

from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select
from starlette.applications import Starlette

from domains.billing.ledger import Entry, post_movement
from domains.billing.models import EntrySide, LedgerAccount
from domains.clock import utcnow
from domains.customers.models import Customer
from domains.database import Database
from domains.identity.models import User
from gateway.app import create_app
from tests.conftest import (
    app_client,
    graphql,
    load_demo_into,
    login,
    make_settings,
    migrated_database,
    statements,
)

# Lock the customer, claim the key, lock the invoice, read its payments, insert the payment
# (RETURNING its row), bind the key, insert the movement's entries, move the balance,
# insert the events (and NOTIFY): the answer is those rows, not read again.
PAYMENT_STATEMENTS = 9
# ... mark the invoice paid (its `invoice.paid` joins the same events insert), and resume
# what the customer's debt suspended, if anything (domains/billing/suspension.py).
PAYING_OFF_STATEMENTS = PAYMENT_STATEMENTS + 2


@pytest_asyncio.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def client(
    request: pytest.FixtureRequest, signing_key: bytes
) -> AsyncIterator[httpx.AsyncClient]:
    """An app on a private demo database: these tests pay."""
    if request.param == "sqlite":
        url = request.getfixturevalue("sqlite_url")
        await load_demo_into(url)
        async for http in app_client(create_app(make_settings(url, signing_key))):
            yield http
        return
    async with migrated_database("kabinet_pay_statements") as url:
        await load_demo_into(url)
        async for http in app_client(create_app(make_settings(url, signing_key))):
            yield http


def _app(client: httpx.AsyncClient) -> Starlette:
    return client._transport.app  # type: ignore[attr-defined]


async def _overdue_invoice(client: httpx.AsyncClient, token: str) -> tuple[str, str]:
    query = "{ invoices(status: [OVERDUE], first: 1) {"
    query += " edges { node { id amountDue { amount } } } } }"
    body = await graphql(client, query, token=token)
    node = body["data"]["invoices"]["edges"][0]["node"]
    return node["id"], node["amountDue"]["amount"]


async def _top_up(db: Database, email: str, amount: Decimal) -> None:
    """What a confirmed card top-up books: the provider's clearing pays the balance."""
    stmt = select(Customer.id).join(User, User.id == Customer.user_id).where(User.email == email)
    async with db.transaction() as tx:
        customer_id = (await tx.execute(stmt.with_for_update())).scalar_one()
        common = {"amount": amount, "currency": "RUB", "customer_id": customer_id}
        await post_movement(
            tx,
            [
                Entry(LedgerAccount.PROVIDER_CLEARING, EntrySide.DEBIT, **common),
                Entry(LedgerAccount.CUSTOMER_BALANCE, EntrySide.CREDIT, **common),
            ],
            utcnow(),
        )


async def _pay(
    client: httpx.AsyncClient, token: str, invoice: str, amount: str, key: str
) -> tuple[dict, list[str]]:
    with statements(_app(client)) as ran:
        response = await client.post(
            "/billing/pay",
            json={"invoice_id": invoice, "method": "balance", "amount": amount},
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
        )
    assert response.status_code == 201, response.text
    return response.json(), ran


async def test_a_balance_payment_sends_a_fixed_number_of_statements(client: httpx.AsyncClient):
    alice = await login(client, "alice@example.com")
    invoice, due = await _overdue_invoice(client, alice)

    body, ran = await _pay(client, alice, invoice, "1.00", "statements-1")
    assert len(ran) == PAYMENT_STATEMENTS, "\n\n".join(ran)
    assert body["payment"]["status"] == "succeeded"
    assert body["invoice"]["status"] == "overdue"
    assert body["customer"]["balance"] == {"amount": "419.00", "currency": "RUB"}

    await _top_up(_app(client).state.services.db, "alice@example.com", Decimal(due))
    rest = str(Decimal(due) - Decimal("1.00"))
    body, ran = await _pay(client, alice, invoice, rest, "statements-2")
    assert len(ran) == PAYING_OFF_STATEMENTS, "\n\n".join(ran)
    assert body["invoice"]["status"] == "paid"
