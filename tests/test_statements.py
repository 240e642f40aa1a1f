"""The read path runs a fixed number of SQL statements, however many rows it returns, on
either execution path (a checked run would count graphql-core's second pass too)."""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from starlette.applications import Starlette

from gateway.app import create_app
from schema.planned import Execution
from tests.conftest import app_client, graphql, login, make_settings, statements

pytestmark = pytest.mark.postgres

BENCH = Path(__file__).resolve().parent.parent / "bench"
DASHBOARD = (BENCH / "dashboard.graphql").read_text()
STAFF_CUSTOMERS = (BENCH / "staff_customers.graphql").read_text()

# me, customer by user, contracts, tariffs, subscriptions, invoice page, payments.
DASHBOARD_STATEMENTS = 7
# customer page, users, invoice pages, payments.
STAFF_STATEMENTS = 4


@pytest_asyncio.fixture(params=[Execution.PLANNED, Execution.GRAPHQL_CORE])
async def pg_client(
    request: pytest.FixtureRequest, pg_demo_url: str, signing_key: bytes
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(pg_demo_url, signing_key, graphql_execution=request.param)
    async for client in app_client(create_app(settings)):
        yield client


def _app(client: httpx.AsyncClient) -> Starlette:
    return client._transport.app  # type: ignore[attr-defined]


async def test_dashboard_statements_do_not_grow_with_rows(pg_client: httpx.AsyncClient):
    token = await login(pg_client, "bob@example.com")  # every invoice paid
    with statements(_app(pg_client)) as ran:
        body = await graphql(pg_client, DASHBOARD, token=token)
    invoices = body["data"]["me"]["customer"]["invoices"]["edges"]
    assert len(invoices) == 12
    assert sum(len(edge["node"]["payments"]) for edge in invoices) == 12
    assert len(ran) == DASHBOARD_STATEMENTS, "\n\n".join(ran)

    fewer = DASHBOARD.replace("invoices(first: 12)", "invoices(first: 2)")
    with statements(_app(pg_client)) as ran:
        body = await graphql(pg_client, fewer, token=token)
    assert len(body["data"]["me"]["customer"]["invoices"]["edges"]) == 2
    assert len(ran) == DASHBOARD_STATEMENTS


async def test_staff_list_statements_do_not_grow_with_rows(pg_client: httpx.AsyncClient):
    token = await login(pg_client, "operator@example.com")
    for first in (50, 5):
        with statements(_app(pg_client)) as ran:
            body = await graphql(pg_client, STAFF_CUSTOMERS, {"first": first}, token)
        customers = body["data"]["customers"]["edges"]
        assert len(customers) == first
        assert all(len(c["node"]["invoices"]["edges"]) == 3 for c in customers)
        assert len(ran) == STAFF_STATEMENTS, "\n\n".join(ran)


# The staff list with each invoice's lines: one statement more, however many invoices.
STAFF_WITH_LINES = STAFF_CUSTOMERS.replace(
    "payments { id status }", "payments { id status } lines { description amount { amount } }"
)


async def test_invoice_lines_add_one_statement_however_many_invoices(pg_client: httpx.AsyncClient):
    assert STAFF_WITH_LINES != STAFF_CUSTOMERS
    token = await login(pg_client, "operator@example.com")
    for first in (20, 5):  # 50 customers' lines would exceed the cost limit
        with statements(_app(pg_client)) as ran:
            body = await graphql(pg_client, STAFF_WITH_LINES, {"first": first}, token)
        assert "errors" not in body, body
        invoices = [
            invoice["node"]
            for customer in body["data"]["customers"]["edges"]
            for invoice in customer["node"]["invoices"]["edges"]
        ]
        assert len(invoices) == 3 * first
        assert all(invoice["lines"] for invoice in invoices)  # the run's: one a subscription
        assert len(ran) == STAFF_STATEMENTS + 1, "\n\n".join(ran)
