"""payInvoice, refundPayment and POST /billing/pay over HTTP; `kabinet billing reconcile`."""

import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator

import httpx
import pytest_asyncio

from gateway.app import create_app
from tests.conftest import app_client, graphql, login, make_settings

PAY = """
mutation($input: PayInvoiceInput!) {
  payInvoice(input: $input) {
    payment { id status amount { amount currency } }
    invoice { id status amountDue { amount } }
    customer { balance { amount } }
  }
}
"""


@pytest_asyncio.fixture
async def client(sqlite_demo_copy: str, signing_key: bytes) -> AsyncIterator[httpx.AsyncClient]:
    """On a private copy of the demo database: these tests pay and refund."""
    async for http in app_client(create_app(make_settings(sqlite_demo_copy, signing_key))):
        yield http


async def _invoice(client: httpx.AsyncClient, token: str, status: str) -> dict:
    query = "query($s: [InvoiceStatus!]) { invoices(status: $s, first: 1) {"
    query += " edges { node { id amountDue { amount } payments { id } } } } }"
    body = await graphql(client, query, {"s": [status]}, token)
    return body["data"]["invoices"]["edges"][0]["node"]


async def test_pay_invoice_mutation_answers_retries_alike(client: httpx.AsyncClient):
    alice = await login(client, "alice@example.com")
    invoice = await _invoice(client, alice, "OVERDUE")
    variables = {
        "input": {
            "invoiceId": invoice["id"],
            "method": "BALANCE",
            "amount": "20.00",
            "idempotencyKey": "gql-1",
        }
    }
    first = await graphql(client, PAY, variables, alice)
    assert "errors" not in first, first
    paid = first["data"]["payInvoice"]
    assert paid["payment"]["status"] == "SUCCEEDED"
    assert paid["payment"]["amount"] == {"amount": "20.00", "currency": "RUB"}
    assert paid["customer"]["balance"]["amount"] == "400.00"
    due = float(invoice["amountDue"]["amount"]) - 20
    assert float(paid["invoice"]["amountDue"]["amount"]) == due
    assert await graphql(client, PAY, variables, alice) == first

    variables["input"]["amount"] = "21.00"
    body = await graphql(client, PAY, variables, alice)
    assert body["errors"][0]["extensions"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    variables["input"] |= {"method": "CARD", "idempotencyKey": "gql-2"}
    body = await graphql(client, PAY, variables, alice)
    assert body["errors"][0]["extensions"]["code"] == "PAYMENT_METHOD_UNAVAILABLE"


async def test_refund_payment_mutation(client: httpx.AsyncClient):
    """An admin retrying after a timeout gets the first refund back and refunds nothing
    again; the key asked for another refund is refused, as a payment's is."""
    alice = await login(client, "alice@example.com")
    payment = (await _invoice(client, alice, "PAID"))["payments"][0]["id"]
    admin = await login(client, "admin@example.com")
    refund = """
    mutation($p: ID!, $a: Decimal!, $k: String!) {
      refundPayment(paymentId: $p, amount: $a, reason: "outage", idempotencyKey: $k) {
        payment { refundedAmount { amount } }
        invoice { status }
      }
    }
    """
    first = await graphql(client, refund, {"p": payment, "a": "5.00", "k": "refund-1"}, admin)
    assert "errors" not in first, first
    assert first["data"]["refundPayment"]["payment"]["refundedAmount"]["amount"] == "5.00"
    assert first["data"]["refundPayment"]["invoice"]["status"] == "ISSUED"
    retry = await graphql(client, refund, {"p": payment, "a": "5.00", "k": "refund-1"}, admin)
    assert retry == first
    body = await graphql(client, refund, {"p": payment, "a": "6.00", "k": "refund-1"}, admin)
    assert body["errors"][0]["extensions"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    body = await graphql(client, refund, {"p": payment, "a": "100000.00", "k": "r-2"}, admin)
    assert body["errors"][0]["extensions"]["code"] == "REFUND_EXCEEDS_PAYMENT"
    body = await graphql(client, refund, {"p": payment, "a": "1.00", "k": ""}, admin)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_rest_pay(client: httpx.AsyncClient):
    alice = await login(client, "alice@example.com")
    bob = await login(client, "bob@example.com")
    invoice = (await _invoice(client, alice, "OVERDUE"))["id"]
    bobs = (await _invoice(client, bob, "PAID"))["id"]
    auth = {"Authorization": f"Bearer {alice}"}
    body = {"invoice_id": invoice, "method": "balance", "amount": "10.00"}

    missing = await client.post("/billing/pay", json=body, headers=auth)
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "BAD_USER_INPUT"

    keyed = {**auth, "Idempotency-Key": "rest-1"}
    created = await client.post("/billing/pay", json=body, headers=keyed)
    assert created.status_code == 201, created.text
    assert created.json()["customer"]["balance"] == {"amount": "410.00", "currency": "RUB"}
    replayed = await client.post("/billing/pay", json=body, headers=keyed)
    assert replayed.status_code == 200
    assert replayed.json() == created.json()

    for payload, headers, status, code in (
        ({**body, "amount": "11.00"}, keyed, 409, "IDEMPOTENCY_KEY_REUSED"),
        ({**body, "invoice_id": bobs}, {**auth, "Idempotency-Key": "r2"}, 404, "NOT_FOUND"),
        ({**body, "amount": "0.001"}, {**auth, "Idempotency-Key": "r3"}, 422, "INVALID_AMOUNT"),
        ({**body, "amount": 10}, {**auth, "Idempotency-Key": "r4"}, 400, "BAD_USER_INPUT"),
        ({**body, "amount": "99999.00"}, {**auth, "Idempotency-Key": "r5"}, 422, "INVALID_AMOUNT"),
    ):
        response = await client.post("/billing/pay", json=payload, headers=headers)
        assert response.status_code == status, payload
        assert response.json()["error"]["code"] == code
    anonymous = await client.post("/billing/pay", json=body, headers={"Idempotency-Key": "a"})
    assert anonymous.status_code == 401


def _reconcile(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "billing", "reconcile"],
        env={**os.environ, "KABINET_DATABASE_URL": url},
        capture_output=True,
        text=True,
        check=False,
    )


async def test_reconcile_command(sqlite_demo_copy: str):
    clean = _reconcile(sqlite_demo_copy)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.startswith("OK")
    with sqlite3.connect(sqlite_demo_copy.split("///", 1)[1]) as conn:
        conn.execute("UPDATE customers SET balance = balance + 1 WHERE id = 1")
    broken = _reconcile(sqlite_demo_copy)
    assert broken.returncode == 1
    assert "balance_mismatch: customer:1:" in broken.stdout


async def test_balance_history_and_staff_ledger(client: httpx.AsyncClient):
    alice = await login(client, "alice@example.com")
    invoice = (await _invoice(client, alice, "OVERDUE"))["id"]
    pay = {"invoiceId": invoice, "method": "BALANCE", "amount": "15.00", "idempotencyKey": "h"}
    assert "errors" not in await graphql(client, PAY, {"input": pay}, alice)
    history = """
    { balanceHistory(first: 2) { edges { node { account type amount { amount } } } } }
    """
    body = await graphql(client, history, token=alice)
    newest = body["data"]["balanceHistory"]["edges"][0]["node"]
    assert newest == {"account": "CUSTOMER_BALANCE", "type": "DEBIT", "amount": {"amount": "15.00"}}

    customer = (await graphql(client, "{ me { customer { id } } }", token=alice))["data"]
    ledger = """
    query($c: ID!) { ledger(customerId: $c, first: 100) {
      edges { node { account type amount { amount } } } pageInfo { hasNextPage } } }
    """
    operator = await login(client, "operator@example.com")
    body = await graphql(client, ledger, {"c": customer["me"]["customer"]["id"]}, operator)
    entries = [edge["node"] for edge in body["data"]["ledger"]["edges"]]
    assert {e["account"] for e in entries} >= {"CUSTOMER_BALANCE", "RECEIVABLE"}
    debits = sum(float(e["amount"]["amount"]) for e in entries if e["type"] == "DEBIT")
    credits = sum(float(e["amount"]["amount"]) for e in entries if e["type"] == "CREDIT")
    assert debits == credits  # every movement of hers is whole, so her ledger balances
    body = await graphql(client, ledger, {"c": customer["me"]["customer"]["id"]}, alice)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
