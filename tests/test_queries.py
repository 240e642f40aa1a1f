"""The portal's and admin panel's first queries, on PostgreSQL and on the embedded SQLite path."""

from datetime import date
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.conftest import graphql, login

BENCH = Path(__file__).resolve().parent.parent / "bench"
DASHBOARD = (BENCH / "dashboard.graphql").read_text()

INVOICE_PAGE = """
query($first: Int, $after: String, $last: Int, $before: String, $status: [InvoiceStatus!]) {
  invoices(first: $first, after: $after, last: $last, before: $before, status: $status) {
    edges { cursor node { number status periodStart amountDue { amount } } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""


INVOICE_LINES = """
{ me { customer {
  subscriptions { id tariff { id name } }
  invoices(first: 12) { edges { node {
    periodStart periodEnd amount { amount currency }
    lines {
      description periodStart periodEnd firstDay lastDay days subscriptionId tariffId
      unitPrice { amount currency } amount { amount currency }
    }
  } } }
} } }
"""


@pytest.fixture(params=["postgres", "sqlite"])
def client(request: pytest.FixtureRequest) -> httpx.AsyncClient:
    name = "pg_client" if request.param == "postgres" else "sqlite_demo_client"
    return request.getfixturevalue(name)


async def test_dashboard(client: httpx.AsyncClient):
    token = await login(client, "alice@example.com")
    body = await graphql(client, DASHBOARD, token=token)
    assert "errors" not in body
    customer = body["data"]["me"]["customer"]
    assert customer["balance"] == {"amount": "420.00", "currency": "RUB"}
    assert len(customer["contracts"]) == 2
    assert all(c["tariff"]["monthlyPrice"]["amount"] for c in customer["contracts"])
    invoices = [edge["node"] for edge in customer["invoices"]["edges"]]
    assert len(invoices) == 12
    periods = [invoice["periodStart"] for invoice in invoices]
    assert periods == sorted(periods, reverse=True), "newest first"
    assert any(invoice["status"] == "OVERDUE" for invoice in invoices)
    for invoice in invoices:
        paid = sum(
            Decimal(p["amount"]["amount"])
            for p in invoice["payments"]
            if p["status"] == "SUCCEEDED"
        )
        due = Decimal(invoice["amount"]["amount"]) - paid
        assert Decimal(invoice["amountDue"]["amount"]) == max(due, Decimal("0.00"))


async def test_invoice_pages_walk_forward_and_back(client: httpx.AsyncClient):
    token = await login(client, "alice@example.com")
    seen: list[str] = []
    after = None
    while True:
        body = await graphql(client, INVOICE_PAGE, {"first": 5, "after": after}, token)
        page = body["data"]["invoices"]
        seen += [edge["node"]["number"] for edge in page["edges"]]
        assert page["pageInfo"]["hasPreviousPage"] is (after is not None)
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert len(seen) == len(set(seen)) == 12  # the run's: one a month, for 12 months

    body = await graphql(client, INVOICE_PAGE, {"last": 5, "before": after}, token)
    backwards = [edge["node"]["number"] for edge in body["data"]["invoices"]["edges"]]
    index = seen.index(backwards[0])
    assert backwards == seen[index : index + 5]


async def test_invoice_filter_by_status(client: httpx.AsyncClient):
    token = await login(client, "alice@example.com")
    body = await graphql(client, INVOICE_PAGE, {"first": 50, "status": ["OVERDUE"]}, token)
    statuses = {edge["node"]["status"] for edge in body["data"]["invoices"]["edges"]}
    assert statuses == {"OVERDUE"}


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"first": 101}, "first must be between 0 and 100"),
        ({"first": 5, "last": 5}, "pass either first or last, not both"),
        ({"first": 5, "after": "bm90LWEtY3Vyc29y"}, "malformed cursor"),
    ],
)
async def test_bad_page_arguments(client: httpx.AsyncClient, variables: dict, message: str):
    token = await login(client, "alice@example.com")
    body = await graphql(client, INVOICE_PAGE, variables, token)
    assert body.get("data") is None
    assert body["errors"][0]["message"] == message
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_rest_invoices_with_profile(client: httpx.AsyncClient):
    token = await login(client, "bob@example.com")
    headers = {"Authorization": f"Bearer {token}"}
    response = await client.get("/billing/invoices?first=3&status=paid", headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert body["customer"]["full_name"]
    assert set(body["customer"]["balance"]) == {"amount", "currency"}
    assert len(body["invoices"]) == 3
    assert {invoice["status"] for invoice in body["invoices"]} == {"paid"}
    assert body["page_info"]["has_next_page"] is True
    after = body["page_info"]["end_cursor"]
    response = await client.get(f"/billing/invoices?first=3&after={after}", headers=headers)
    assert response.json()["invoices"][0]["number"] not in {i["number"] for i in body["invoices"]}


async def test_rest_invoices_errors(client: httpx.AsyncClient):
    assert (await client.get("/billing/invoices")).status_code == 401
    token = await login(client, "bob@example.com")
    headers = {"Authorization": f"Bearer {token}"}
    response = await client.get("/billing/invoices?status=unpaid", headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BAD_USER_INPUT"
    response = await client.get("/billing/invoices?first=500", headers=headers)
    assert response.status_code == 400
    staff = await login(client, "operator@example.com")
    response = await client.get("/billing/invoices", headers={"Authorization": f"Bearer {staff}"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "FORBIDDEN"


async def test_staff_search(client: httpx.AsyncClient):
    token = await login(client, "operator@example.com")
    query = """query($s: String) { customers(search: $s, first: 100) {
        edges { node { contractNum fullName user { email } } } } }"""
    everyone = await graphql(client, query, {"s": None}, token)
    customers = [edge["node"] for edge in everyone["data"]["customers"]["edges"]]
    assert len(customers) == 50
    sample = customers[7]
    for term in (
        sample["contractNum"],
        sample["user"]["email"].upper(),
        sample["fullName"].split()[-1].lower(),
    ):
        found = await graphql(client, query, {"s": term}, token)
        names = [edge["node"]["contractNum"] for edge in found["data"]["customers"]["edges"]]
        assert sample["contractNum"] in names, term
    nothing = await graphql(client, query, {"s": "%_no-such-customer_%"}, token)
    assert nothing["data"]["customers"]["edges"] == []


async def test_tariffs_catalogue(client: httpx.AsyncClient):
    body = await graphql(client, "{ tariffs { name isActive monthlyPrice { amount } } }")
    tariffs = body["data"]["tariffs"]
    assert all(t["isActive"] for t in tariffs)
    prices = [Decimal(t["monthlyPrice"]["amount"]) for t in tariffs]
    assert prices == sorted(prices)
    body = await graphql(client, "{ tariffs(includeArchived: true) { name } }")
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    admin = await login(client, "admin@example.com")
    body = await graphql(client, "{ tariffs(includeArchived: true) { isActive } }", token=admin)
    assert any(not t["isActive"] for t in body["data"]["tariffs"])


async def test_invoice_lines_explain_the_amount(client: httpx.AsyncClient):
    """The run bills alice's two subscriptions a whole month each: a line each, one invoice."""
    token = await login(client, "alice@example.com")
    body = await graphql(client, INVOICE_LINES, token=token)
    assert "errors" not in body
    customer = body["data"]["me"]["customer"]
    tariffs = {sub["id"]: sub["tariff"] for sub in customer["subscriptions"]}
    invoices = [edge["node"] for edge in customer["invoices"]["edges"]]
    assert len(invoices) == 12
    for invoice in invoices:
        start, end = (date.fromisoformat(invoice[f"period{side}"]) for side in ("Start", "End"))
        assert {line["subscriptionId"] for line in invoice["lines"]} == set(tariffs)
        for line in invoice["lines"]:
            assert (line["periodStart"], line["periodEnd"]) == (str(start), str(end))
            assert (line["firstDay"], line["lastDay"]) == (str(start), str(end))
            assert line["days"] == (end - start).days + 1
            assert line["amount"] == line["unitPrice"]
            tariff = tariffs[line["subscriptionId"]]
            assert line["tariffId"] == tariff["id"]
            assert line["description"] == (
                f"{tariff['name']}: {start} to {end}, {line['days']} of {line['days']} days"
            )
        total = sum(Decimal(line["amount"]["amount"]) for line in invoice["lines"])
        assert Decimal(invoice["amount"]["amount"]) == total
    assert len(tariffs) == 2
