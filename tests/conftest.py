"""Shared fixtures: a fresh PostgreSQL database per test run, SQLite files per test, apps."""

import contextlib
import os
import secrets
import shutil
import sqlite3
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest
import pytest_asyncio
from sqlalchemy import update
from starlette.applications import Starlette

from domains.clock import utcnow
from domains.database import Database
from domains.events.catalog import EventCatalog
from domains.identity.tokens import generate_signing_key
from domains.outbox import OutboxEvent
from gateway.app import create_app
from gateway.demo import load_demo
from gateway.settings import Settings
from migrations import upgrade
from schema.domains import DOMAINS
from schema.planned import CheckedExecutor, Execution

# Each xdist worker (`make test` runs several) its own Redis database, so one file's keys
# (rate limits per login, sessions) never meet another's running beside it.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
TEST_REDIS_URL = os.environ.get(
    "KABINET_TEST_REDIS", f"redis://127.0.0.1:6379/{int(_WORKER.removeprefix('gw'))}"
)
PG_ADMIN_URL = os.environ.get("KABINET_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
DEMO_PASSWORD = "kabinet-demo"
# The demo's support desk, children first, and who is signed in (`sqlite_desk_copy` empties
# them: tests before may have signed staff in on the shared demo file).
SUPPORT_DESK_TABLES = (
    "refresh_tokens",
    "sessions",
    "ticket_assignments",
    "ticket_messages",
    "tickets",
    "support_operator_skills",
    "support_operators",
)


@pytest.fixture(scope="session")
def signing_key() -> bytes:
    return generate_signing_key()


def catalog_of(topics: Mapping[str, str], source: str = "urn:kabinet") -> EventCatalog:
    """The served domains' events over `topics`; `ticket` stands for a domain with objects
    of its own, as support will be."""
    domains = {prefix: domain.name for domain in DOMAINS for prefix in domain.events}
    return EventCatalog(source, {**domains, "ticket": "support"}, topics)


def make_settings(database_url: str, signing_key: bytes, **overrides: object) -> Settings:
    """Test settings: every planned query also runs on graphql-core and must answer the same
    (schema/planned.py), so the whole suite is the plan's equivalence corpus."""
    overrides.setdefault("graphql_execution", Execution.CHECKED)
    # Production apps in tests run on SQLite too, one process each; the refusal of embedded
    # stores in production is tests/test_production_mode.py's.
    overrides.setdefault("single_instance", True)
    return Settings(
        database_url=database_url,
        jwt_private_key=signing_key.decode(),
        **overrides,  # type: ignore[arg-type]
    )


@pytest.fixture(autouse=True)
def plan_matches_graphql_core() -> Iterator[None]:
    """Fails the test during which a planned answer differed from graphql-core's, even where
    the test itself did not look at that answer."""
    seen = len(CheckedExecutor.mismatches)
    yield
    assert CheckedExecutor.mismatches[seen:] == []


@asynccontextmanager
async def scratch_database(prefix: str) -> AsyncIterator[str]:
    """An empty PostgreSQL database (its SQLAlchemy URL) for the block, dropped afterwards."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@asynccontextmanager
async def migrated_database(prefix: str) -> AsyncIterator[str]:
    """A scratch PostgreSQL database (its SQLAlchemy URL) migrated to head."""
    async with scratch_database(prefix) as url:
        upgrade(url)
        yield url


async def load_demo_into(url: str) -> None:
    """The demo, its events taken as relayed: they are its history (the months' invoices and
    payments), published before a test begins, so a test's relay and live streams carry
    only what the test does."""
    db = Database(url)
    try:
        await load_demo(db)
        async with db.transaction() as session:
            await session.execute(
                update(OutboxEvent)
                .where(OutboxEvent.published_at.is_(None))
                .values(published_at=utcnow())
            )
    finally:
        await db.dispose()


@pytest_asyncio.fixture(scope="session")
async def pg_url() -> AsyncIterator[str]:
    """A database created for this run, migrated to head, dropped afterwards."""
    async with migrated_database("kabinet_test") as url:
        yield url


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Kafka-wire broker for the run: KABINET_TEST_KAFKA, or Tansu on a free port."""
    if named := os.environ.get("KABINET_TEST_KAFKA"):
        yield named
        return
    from tests.kafka import TansuBroker

    broker = TansuBroker(tmp_path_factory.mktemp("tansu"))
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def rabbitmq_url() -> Iterator[str]:
    """RabbitMQ for the run: KABINET_TEST_RABBITMQ, or a fresh vhost on 127.0.0.1:5672."""
    if named := os.environ.get("KABINET_TEST_RABBITMQ"):
        yield named
        return
    from tests.rabbitmq import drop_vhost, fresh_vhost

    url, vhost = fresh_vhost()
    try:
        yield url
    finally:
        drop_vhost(vhost)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'kabinet.db'}"
    upgrade(url)
    return url


@pytest_asyncio.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A database at head for this test alone, SQLite and PostgreSQL: whatever the test
    does to it (a sweep over every payment, a broken invariant) reaches no other test."""
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_url")
        return
    async with migrated_database("kabinet_own") as url:
        yield url


@pytest_asyncio.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    yield database
    await database.dispose()


@pytest_asyncio.fixture(scope="session")
async def pg_demo_url(pg_url: str) -> str:
    """The run's PostgreSQL database with the demo data loaded (read-only tests share it)."""
    await load_demo_into(pg_url)
    return pg_url


async def app_client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client of `app`; the app's services are closed after it."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client
    await app.state.services.aclose()


@pytest_asyncio.fixture(scope="session")
async def sqlite_demo_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite file with the demo data, shared by read-only tests of the embedded path."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('demo') / 'kabinet.db'}"
    upgrade(url)
    await load_demo_into(url)
    return url


@pytest.fixture
def sqlite_demo_copy(sqlite_demo_url: str, tmp_path: Path) -> str:
    """A private copy of the demo SQLite file, for a test that changes it."""
    copy = tmp_path / "demo.db"
    shutil.copy(Path(sqlite_demo_url.split("///", 1)[1]), copy)
    return f"sqlite+aiosqlite:///{copy}"


@pytest.fixture
def sqlite_desk_copy(sqlite_demo_copy: str) -> str:
    """A private demo copy whose support desk is empty (no operators, no tickets) and where
    nobody is signed in, for tests that set the desk up themselves on the demo's people and
    logins (an operator's presence follows their sessions)."""
    with contextlib.closing(sqlite3.connect(sqlite_demo_copy.split("///", 1)[1])) as conn:
        for table in SUPPORT_DESK_TABLES:
            conn.execute(f"DELETE FROM {table}")  # noqa: S608 - the module's own table names
        conn.commit()
    return sqlite_demo_copy


@pytest_asyncio.fixture
async def sqlite_demo_client(
    sqlite_demo_url: str, signing_key: bytes
) -> AsyncIterator[httpx.AsyncClient]:
    async for client in app_client(create_app(make_settings(sqlite_demo_url, signing_key))):
        yield client


@pytest_asyncio.fixture
async def sqlite_client(sqlite_url: str, signing_key: bytes) -> AsyncIterator[httpx.AsyncClient]:
    async for client in app_client(create_app(make_settings(sqlite_url, signing_key))):
        yield client


@pytest_asyncio.fixture
async def pg_client(pg_demo_url: str, signing_key: bytes) -> AsyncIterator[httpx.AsyncClient]:
    """An app on the shared PostgreSQL demo database."""
    async for client in app_client(create_app(make_settings(pg_demo_url, signing_key))):
        yield client


async def login(client: httpx.AsyncClient, email: str, password: str = DEMO_PASSWORD) -> str:
    response = await client.post("/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


async def graphql(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, object] | None = None,
    token: str | None = None,
) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()


@contextmanager
def statements(app: Starlette) -> Iterator[list[str]]:
    """Every SQL statement the app sends inside the block, on either pool."""
    db: Database = app.state.services.db
    seen: list[str] = []

    def record(sql: str) -> None:
        seen.append(sql)

    db.on_statement.add(record)
    try:
        yield seen
    finally:
        db.on_statement.discard(record)
