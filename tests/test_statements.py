"""The read path runs a fixed number of SQL statements, however many rows it returns."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import event

from tests.conftest import graphql, login

pytestmark = pytest.mark.postgres

BENCH = Path(__file__).resolve().parent.parent / "bench"
DASHBOARD = (BENCH / "dashboard.graphql").read_text()
STAFF_CUSTOMERS = (BENCH / "staff_customers.graphql").read_text()

# me, customer by user, contracts, tariffs, subscriptions, invoice page, payments.
DASHBOARD_STATEMENTS = 7
# customer page, users, invoice pages, payments.
STAFF_STATEMENTS = 4


@contextmanager
def counting(client: httpx.AsyncClient) -> Iterator[list[str]]:
    app = client._transport.app  # type: ignore[attr-defined]
    engine = app.state.services.db.engine.sync_engine
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def test_dashboard_statements_do_not_grow_with_rows(pg_client: httpx.AsyncClient):
    token = await login(pg_client, "bob@example.com")  # every invoice paid
    with counting(pg_client) as statements:
        body = await graphql(pg_client, DASHBOARD, token=token)
    invoices = body["data"]["me"]["customer"]["invoices"]["edges"]
    assert len(invoices) == 12
    assert sum(len(edge["node"]["payments"]) for edge in invoices) == 12
    assert len(statements) == DASHBOARD_STATEMENTS, "\n\n".join(statements)

    fewer = DASHBOARD.replace("invoices(first: 12)", "invoices(first: 2)")
    with counting(pg_client) as statements:
        body = await graphql(pg_client, fewer, token=token)
    assert len(body["data"]["me"]["customer"]["invoices"]["edges"]) == 2
    assert len(statements) == DASHBOARD_STATEMENTS


async def test_staff_list_statements_do_not_grow_with_rows(pg_client: httpx.AsyncClient):
    token = await login(pg_client, "operator@example.com")
    for first in (50, 5):
        with counting(pg_client) as statements:
            body = await graphql(pg_client, STAFF_CUSTOMERS, {"first": first}, token)
        customers = body["data"]["customers"]["edges"]
        assert len(customers) == first
        assert all(len(c["node"]["invoices"]["edges"]) == 3 for c in customers)
        assert len(statements) == STAFF_STATEMENTS, "\n\n".join(statements)
