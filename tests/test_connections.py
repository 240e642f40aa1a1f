"""A process's connections: a pool that stays full (the engine's, for units of work, or the
read pool, for declared reads), or PostgreSQL out of connections, answers 503
SERVICE_UNAVAILABLE on GraphQL and REST alike, writes nothing, and the same requests work once
a connection is free again (real PostgreSQL, pools of one); SQLite keeps its own pool."""

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from starlette.applications import Starlette

from domains.billing.models import IdempotencyKey, Payment
from domains.database import Database
from gateway.app import create_app
from tests.conftest import (
    PG_ADMIN_URL,
    app_client,
    load_demo_into,
    login,
    make_settings,
    migrated_database,
)

DASHBOARD = (Path(__file__).resolve().parent.parent / "bench" / "dashboard.graphql").read_text()
PAY = """
mutation($input: PayInvoiceInput!) {
  payInvoice(input: $input) { payment { id status } }
}
"""
OVERDUE = "{ invoices(status: [OVERDUE], first: 1) { edges { node { id } } } }"
# One connection in each pool, given up on quickly: the tests hold them to fill the pools.
POOL_OF_ONE = {
    "database_pool_size": 1,
    "database_max_overflow": 0,
    "database_read_pool_size": 1,
    "database_pool_timeout": 0.2,
    "worker_in_process": False,
}


@pytest_asyncio.fixture(scope="module")
async def demo_url() -> AsyncIterator[str]:
    """A demo database of this module's own: its tests pay."""
    async with migrated_database("kabinet_connections") as url:
        await load_demo_into(url)
        yield url


@pytest_asyncio.fixture
async def app(demo_url: str, signing_key: bytes) -> Starlette:
    return create_app(make_settings(demo_url, signing_key, **POOL_OF_ONE))


@pytest_asyncio.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async for http in app_client(app):
        yield http


def codes(body: dict[str, Any]) -> set[str]:
    return {error["extensions"]["code"] for error in body["errors"]}


async def written(url: str) -> tuple[int, int]:
    """Payments and idempotency keys, counted on a connection of the test's own."""
    db = Database(url)
    try:
        async with db.connect() as conn:
            payments = await conn.scalar(select(func.count()).select_from(Payment))
            keys = await conn.scalar(select(func.count()).select_from(IdempotencyKey))
    finally:
        await db.dispose()
    return int(payments or 0), int(keys or 0)


@pytest.mark.postgres
async def test_a_full_pool_answers_503_and_writes_nothing(
    app: Starlette, client: httpx.AsyncClient, demo_url: str
):
    token = await login(client, "alice@example.com")
    auth = {"Authorization": f"Bearer {token}"}
    invoice = (await client.post("/graphql", json={"query": OVERDUE}, headers=auth)).json()
    invoice_id = invoice["data"]["invoices"]["edges"][0]["node"]["id"]
    pay = {"invoiceId": invoice_id, "method": "BALANCE", "amount": "1.00"}
    rest_pay = {"invoice_id": invoice_id, "method": "balance", "amount": "1.00"}
    before = await written(demo_url)

    db = app.state.services.db
    async with db.read(), db.connect():  # each pool's one connection
        for accept in ("application/json", "application/graphql-response+json"):
            dashboard = await client.post(
                "/graphql", json={"query": DASHBOARD}, headers={**auth, "Accept": accept}
            )
            assert dashboard.status_code == 503, dashboard.text
            assert codes(dashboard.json()) == {"SERVICE_UNAVAILABLE"}
        mutation = await client.post(
            "/graphql",
            json={"query": PAY, "variables": {"input": {**pay, "idempotencyKey": "held-gql"}}},
            headers=auth,
        )
        assert mutation.status_code == 503, mutation.text
        assert codes(mutation.json()) == {"SERVICE_UNAVAILABLE"}
        invoices = await client.get("/billing/invoices", headers=auth)
        assert invoices.status_code == 503, invoices.text
        assert invoices.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
        paid = await client.post(
            "/billing/pay", json=rest_pay, headers={**auth, "Idempotency-Key": "held-rest"}
        )
        assert paid.status_code == 503, paid.text
        assert paid.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
        ready = await client.get("/health/ready")
        assert (ready.status_code, ready.json()["database"]) == (503, "busy")
        assert await written(demo_url) == before

    # Released: the same requests are served, and the keys were never bound (created anew).
    dashboard = await client.post("/graphql", json={"query": DASHBOARD}, headers=auth)
    assert dashboard.status_code == 200, dashboard.text
    assert "errors" not in dashboard.json(), dashboard.text
    mutation = await client.post(
        "/graphql",
        json={"query": PAY, "variables": {"input": {**pay, "idempotencyKey": "held-gql"}}},
        headers=auth,
    )
    assert mutation.status_code == 200, mutation.text
    assert "errors" not in mutation.json(), mutation.text
    invoices = await client.get("/billing/invoices", headers=auth)
    assert invoices.status_code == 200, invoices.text
    paid = await client.post(
        "/billing/pay", json=rest_pay, headers={**auth, "Idempotency-Key": "held-rest"}
    )
    assert paid.status_code == 201, paid.text
    assert (await client.get("/health/ready")).json() == {"status": "ok", "database": "up"}
    payments, keys = before
    assert await written(demo_url) == (payments + 2, keys + 2)


@pytest.mark.postgres
async def test_a_full_read_pool_answers_503_and_units_of_work_go_on(
    app: Starlette, client: httpx.AsyncClient, demo_url: str
):
    """The read pool is the declared reads' own: full, reads answer 503 while a unit of
    work that reads nothing first (a logout) still commits."""
    token = await login(client, "alice@example.com")
    auth = {"Authorization": f"Bearer {token}"}
    async with app.state.services.db.read():  # the read pool's one connection
        dashboard = await client.post("/graphql", json={"query": DASHBOARD}, headers=auth)
        assert dashboard.status_code == 503, dashboard.text
        assert codes(dashboard.json()) == {"SERVICE_UNAVAILABLE"}
        invoices = await client.get("/billing/invoices", headers=auth)
        assert invoices.status_code == 503, invoices.text
        assert invoices.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
        ready = await client.get("/health/ready")
        assert (ready.status_code, ready.json()["database"]) == (503, "busy")
        logout = await client.post("/auth/logout", headers=auth)
        assert logout.status_code == 204, logout.text
    token = await login(client, "alice@example.com")
    dashboard = await client.post(
        "/graphql", json={"query": DASHBOARD}, headers={"Authorization": f"Bearer {token}"}
    )
    assert dashboard.status_code == 200, dashboard.text
    assert "errors" not in dashboard.json(), dashboard.text


@pytest.mark.postgres
async def test_a_full_engine_pool_leaves_declared_reads_served(
    app: Starlette, client: httpx.AsyncClient
):
    token = await login(client, "alice@example.com")
    auth = {"Authorization": f"Bearer {token}"}
    async with app.state.services.db.connect():  # the engine pool's one connection
        dashboard = await client.post("/graphql", json={"query": DASHBOARD}, headers=auth)
        assert dashboard.status_code == 200, dashboard.text
        assert "errors" not in dashboard.json(), dashboard.text
        refused = await client.post("/auth/logout", headers=auth)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "SERVICE_UNAVAILABLE"


@pytest_asyncio.fixture
async def refused_url(demo_url: str) -> AsyncIterator[str]:
    """The demo database as a role PostgreSQL lets open no connection (53300, as when
    max_connections is reached)."""
    role = f"kabinet_refused_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0")
        yield make_url(demo_url).set(username=role).render_as_string(hide_password=False)
    finally:
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()


@pytest.mark.postgres
async def test_postgres_refusing_connections_answers_503(refused_url: str, signing_key: bytes):
    settings = make_settings(refused_url, signing_key, worker_in_process=False)
    async for client in app_client(create_app(settings)):
        tariffs = await client.post("/graphql", json={"query": "{ tariffs { id } }"})
        assert tariffs.status_code == 503, tariffs.text
        assert codes(tariffs.json()) == {"SERVICE_UNAVAILABLE"}
        signed_in = await client.post(
            "/auth/login", json={"email": "alice@example.com", "password": "whatever"}
        )
        assert signed_in.status_code == 503, signed_in.text
        assert signed_in.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
        ready = await client.get("/health/ready")
        assert (ready.status_code, ready.json()["database"]) == (503, "busy")


async def test_sqlite_keeps_its_own_pool(sqlite_demo_url: str, signing_key: bytes):
    """The embedded mode takes no PostgreSQL pool settings: a pool of one does not bind it."""
    app = create_app(make_settings(sqlite_demo_url, signing_key, **POOL_OF_ONE))
    async for client in app_client(app):
        token = await login(client, "alice@example.com")
        async with app.state.services.db.read():
            dashboard = await client.post(
                "/graphql", json={"query": DASHBOARD}, headers={"Authorization": f"Bearer {token}"}
            )
        assert dashboard.status_code == 200, dashboard.text
        assert "errors" not in dashboard.json()
