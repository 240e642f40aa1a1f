"""Numbers out of range or precision are refused at the edge with a code, never a 500.

Attacks from issue 12 (point 11): an amount like "1e26" made `Decimal.quantize` raise
InvalidOperation, an id above int64 reached PostgreSQL and raised DataError.
"""

import base64
import uuid

import httpx
import pytest

from tests.conftest import graphql, login

pytestmark = pytest.mark.postgres

AMOUNTS = ["1e26", "1E+30", "0.001", "NaN", "-Infinity", "-1", "0", "12345678901.00"]
PAY = """mutation($input: PayInvoiceInput!) { payInvoice(input: $input) {
  payment { id } } }"""
TOP_UP = """mutation($amount: Decimal!, $key: String!) {
  topUpBalance(amount: $amount, idempotencyKey: $key) { confirmationUrl } }"""
FIRST_INVOICE = "{ invoices(first: 1, status: [ISSUED, OVERDUE]) { edges { node { id } } } }"


def _global_id(type_name: str, pk: str) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{pk}".encode()).decode().rstrip("=")


def _codes(body: dict) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", [])]


@pytest.mark.parametrize("amount", AMOUNTS)
async def test_payment_amounts_out_of_range_are_refused(pg_client: httpx.AsyncClient, amount):
    token = await login(pg_client, "alice@example.com")
    found = await graphql(pg_client, FIRST_INVOICE, token=token)
    invoice_id = found["data"]["invoices"]["edges"][0]["node"]["id"]
    variables = {
        "input": {
            "invoiceId": invoice_id,
            "method": "BALANCE",
            "amount": amount,
            "idempotencyKey": str(uuid.uuid4()),
        }
    }
    body = await graphql(pg_client, PAY, variables, token)
    assert _codes(body) in (["INVALID_AMOUNT"], ["BAD_USER_INPUT"]), body

    rest = await pg_client.post(
        "/billing/pay",
        json={"invoice_id": invoice_id, "method": "balance", "amount": amount},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())},
    )
    assert rest.status_code in (400, 422), rest.text
    assert rest.json()["error"]["code"] in ("INVALID_AMOUNT", "BAD_USER_INPUT")


@pytest.mark.parametrize("amount", AMOUNTS)
async def test_top_up_amounts_out_of_range_are_refused(pg_client: httpx.AsyncClient, amount):
    token = await login(pg_client, "alice@example.com")
    body = await graphql(pg_client, TOP_UP, {"amount": amount, "key": str(uuid.uuid4())}, token)
    assert _codes(body) in (["INVALID_AMOUNT"], ["BAD_USER_INPUT"]), body


@pytest.mark.parametrize("pk", ["9223372036854775808", "99999999999999999999999", "-1", "0"])
async def test_ids_out_of_range_are_bad_user_input(pg_client: httpx.AsyncClient, pk: str):
    token = await login(pg_client, "alice@example.com")
    invoice_id = _global_id("Invoice", pk)
    body = await graphql(
        pg_client, "query($id: ID!) { invoice(id: $id) { number } }", {"id": invoice_id}, token
    )
    assert _codes(body) == ["BAD_USER_INPUT"], body
    body = await graphql(
        pg_client, "query($id: ID!) { node(id: $id) { id } }", {"id": invoice_id}, token
    )
    assert _codes(body) == ["BAD_USER_INPUT"], body
    rest = await pg_client.post(
        "/billing/pay",
        json={"invoice_id": invoice_id, "method": "balance"},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())},
    )
    assert rest.status_code == 400, rest.text
    assert rest.json()["error"]["code"] == "BAD_USER_INPUT"
