"""Sessions: opened by login, listed, ended by logout or revocation, timed out; the store.

Every test runs twice: embedded (SQLite, in-memory session store and limiter) and production
(PostgreSQL, Redis). `portals` is shared with the other identity test modules: each opens
apps on its backend, with fresh users and a client address of its own, so limiter budgets
in Redis never carry over from one test to the next. The apps of one test share a
`ManualClock`: timeouts pass when the test moves it, never while it waits.
"""

import os
import random
import secrets
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select
from starlette.applications import Starlette

from domains.clock import ManualClock
from domains.identity.models import Session, User
from domains.identity.passwords import hash_password
from gateway.app import create_app
from gateway.services import Services
from migrations import upgrade
from tests.conftest import make_settings

# A database of its own: one test flushes it.
REDIS_URL = os.environ.get("KABINET_TEST_REDIS_SESSIONS", "redis://127.0.0.1:6379/9")
PASSWORD = "correct horse battery"
PASSWORD_HASH = hash_password(PASSWORD)  # hashed once: argon2 is slow on purpose
USER_AGENT = "kabinet-tests/1.0"
ME = "{ me { email } }"
MY_SESSIONS = "{ mySessions { id deviceInfo ipAddress createdAt lastSeenAt expiresAt current } }"


@dataclass
class Portal:
    """One app and a client talking to it from one address."""

    client: httpx.AsyncClient
    services: Services
    ip_address: str
    portals: "Portals"

    async def elsewhere(self) -> "Portal":
        """The same app, reached from another address."""
        return await self.portals.connect(self.client._transport.app)  # type: ignore[attr-defined]

    async def user(self, password: str = PASSWORD) -> str:
        """A new customer account; returns its email."""
        email = f"user-{secrets.token_hex(6)}@example.com"
        async with self.services.db.transaction() as tx:
            password_hash = PASSWORD_HASH if password == PASSWORD else hash_password(password)
            tx.add(User(email=email, password_hash=password_hash))
        return email

    @staticmethod
    def stranger() -> str:
        """An email no account has, new each time: limiter budgets in Redis outlive tests."""
        return f"nobody-{secrets.token_hex(6)}@example.com"

    async def login(self, email: str, password: str = PASSWORD, **extra: Any) -> dict[str, Any]:
        response = await self.client.post(
            "/auth/login", json={"email": email, "password": password, **extra}
        )
        assert response.status_code == 200, response.text
        return response.json()

    async def graphql(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )

    async def data(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        """The operation's data; fails the test on any error."""
        response = await self.graphql(query, variables, token)
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body
        return body["data"]

    async def error_code(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> str:
        body = (await self.graphql(query, variables, token)).json()
        return body["errors"][0]["extensions"]["code"]

    async def signed_in(self, token: str) -> bool:
        """Whether the access token still gets through; a refused one gets 401."""
        response = await self.graphql(ME, token=token)
        assert response.status_code in (200, 401), response.text
        if response.status_code == 401:
            assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        return response.status_code == 200


class Portals:
    """Opens apps on one backend (database and store); closes them when the test ends."""

    def __init__(self, database_url: str, redis_url: str | None, signing_key: bytes) -> None:
        self.database_url = database_url
        self.redis_url = redis_url
        self.signing_key = signing_key
        self.clock = ManualClock()
        self.stack = AsyncExitStack()

    async def open(self, signing_key: bytes | None = None, **settings: Any) -> Portal:
        options = {
            "redis_url": self.redis_url,
            "session_check_cache_seconds": 0,
            # Keeps the test's Redis keys from outliving it by much.
            "session_absolute_timeout": timedelta(hours=1),
            # Room for the logins a test makes; the brute-force tests set their own limits.
            "login_attempts_per_account_and_ip": 50,
            "login_attempts_per_account": 50,
            "login_attempts_per_ip": 200,
            **settings,
        }
        key = signing_key or self.signing_key
        app = create_app(make_settings(self.database_url, key, **options), clock=self.clock)
        self.stack.push_async_callback(app.state.services.aclose)
        return await self.connect(app)

    async def connect(self, app: Starlette) -> Portal:
        ip_address = f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(256)}"
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=(ip_address, 50000)),
            base_url="https://testserver",
            headers={"User-Agent": USER_AGENT},
        )
        await self.stack.enter_async_context(client)
        return Portal(client, app.state.services, ip_address, self)


BACKENDS = ["embedded", pytest.param("redis", marks=pytest.mark.postgres)]
# For tests whose subject does not depend on the database or the store.
embedded_only = pytest.mark.parametrize("backend", ["embedded"], indirect=True)


def portals_fixtures() -> tuple[Any, Any, Any]:
    """The `sqlite_template`, `backend` and `portals` fixtures, for a test module to declare.

    SQLite databases are copies of one migrated file: a copy costs far less than migrating.
    """

    @pytest.fixture(scope="session", name="sqlite_template")
    def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
        path = tmp_path_factory.mktemp("identity") / "template.db"
        upgrade(f"sqlite+aiosqlite:///{path}")
        return path

    @pytest.fixture(params=BACKENDS, name="backend")
    def backend(
        request: pytest.FixtureRequest, sqlite_template: Path, tmp_path: Path
    ) -> tuple[str, str | None]:
        if request.param == "embedded":
            path = tmp_path / "kabinet.db"
            shutil.copyfile(sqlite_template, path)
            return f"sqlite+aiosqlite:///{path}", None
        return request.getfixturevalue("pg_url"), REDIS_URL

    @pytest_asyncio.fixture(name="portals")
    async def portals(
        backend: tuple[str, str | None], signing_key: bytes
    ) -> AsyncIterator[Portals]:
        opened = Portals(*backend, signing_key)
        async with opened.stack:
            yield opened

    return sqlite_template, backend, portals


sqlite_template, backend, portals = portals_fixtures()


async def test_login_opens_a_session_listed_in_my_sessions(portals: Portals):
    portal = await portals.open()
    email = await portal.user()
    phone = await portal.login(email, device="Alice's phone")
    portals.clock.advance(timedelta(seconds=1))
    laptop = await portal.login(email)

    sessions = (await portal.data(MY_SESSIONS, token=laptop["access_token"]))["mySessions"]

    assert [s["id"] for s in sessions] == [laptop["session_id"], phone["session_id"]]
    assert [s["current"] for s in sessions] == [True, False]
    assert sessions[1]["deviceInfo"] == f"Alice's phone · {USER_AGENT}"
    assert sessions[0]["deviceInfo"] == USER_AGENT
    assert {s["ipAddress"] for s in sessions} == {portal.ip_address}
    assert sessions[0]["lastSeenAt"] >= sessions[0]["createdAt"]
    assert sessions[0]["expiresAt"] > sessions[0]["createdAt"]
    # Another user's list does not show them.
    other = await portal.login(await portal.user())
    listed = (await portal.data(MY_SESSIONS, token=other["access_token"]))["mySessions"]
    assert [s["id"] for s in listed] == [other["session_id"]]


async def test_login_mutation_returns_the_session_and_both_tokens(portals: Portals):
    portal = await portals.open()
    email = await portal.user()
    login = """mutation($email: String!, $password: String!) {
      login(email: $email, password: $password, device: "CLI") {
        accessToken refreshToken expiresAt refreshExpiresAt sessionId user { email }
      }
    }"""
    payload = (await portal.data(login, {"email": email, "password": PASSWORD}))["login"]
    assert payload["user"] == {"email": email}
    assert len(payload["refreshToken"]) >= 43  # 32 random bytes, base64url
    sessions = (await portal.data(MY_SESSIONS, token=payload["accessToken"]))["mySessions"]
    assert [(s["id"], s["current"]) for s in sessions] == [(payload["sessionId"], True)]
    assert sessions[0]["deviceInfo"] == f"CLI · {USER_AGENT}"


async def test_logout_ends_only_the_current_session(portals: Portals):
    portal = await portals.open()
    email = await portal.user()
    first, second = await portal.login(email), await portal.login(email)

    assert await portal.data("mutation { logout }", token=first["access_token"]) == {"logout": True}

    assert not await portal.signed_in(first["access_token"])
    assert await portal.signed_in(second["access_token"])
    sessions = (await portal.data(MY_SESSIONS, token=second["access_token"]))["mySessions"]
    assert [s["id"] for s in sessions] == [second["session_id"]]


async def test_revoke_session_ends_own_sessions_only(portals: Portals):
    portal = await portals.open()
    email = await portal.user()
    mine, my_other = await portal.login(email), await portal.login(email)
    theirs = await portal.login(await portal.user())
    revoke = "mutation($id: ID!) { revokeSession(id: $id) }"

    for foreign in (theirs["session_id"], str(uuid.uuid4()), "not-a-session"):
        code = await portal.error_code(revoke, {"id": foreign}, token=mine["access_token"])
        assert code == "NOT_FOUND"
    assert await portal.signed_in(theirs["access_token"])

    revoked = await portal.data(revoke, {"id": my_other["session_id"]}, mine["access_token"])
    assert revoked == {"revokeSession": True}
    assert not await portal.signed_in(my_other["access_token"])
    assert await portal.signed_in(mine["access_token"])
    # Already ended: no longer among the viewer's sessions.
    again = await portal.error_code(revoke, {"id": my_other["session_id"]}, mine["access_token"])
    assert again == "NOT_FOUND"


async def test_logout_everywhere_ends_every_session_of_the_user(portals: Portals):
    portal = await portals.open()
    email = await portal.user()
    logins = [await portal.login(email) for _ in range(3)]
    bystander = await portal.login(await portal.user())

    ended = await portal.data("mutation { logoutEverywhere }", token=logins[0]["access_token"])

    assert ended == {"logoutEverywhere": 3}
    for login in logins:
        assert not await portal.signed_in(login["access_token"])
    assert await portal.signed_in(bystander["access_token"])


def ms(milliseconds: float) -> timedelta:
    return timedelta(milliseconds=milliseconds)


async def test_idle_sessions_end_and_use_keeps_them_alive(portals: Portals):
    portal = await portals.open(session_idle_timeout=ms(300))
    token = (await portal.login(await portal.user()))["access_token"]
    for _ in range(3):  # 0.45 s in all, but never 0.3 s idle
        portals.clock.advance(ms(150))
        assert await portal.signed_in(token)

    portals.clock.advance(ms(300))  # idle for the whole timeout

    assert not await portal.signed_in(token)


async def test_sessions_end_at_their_absolute_expiry_even_in_use(portals: Portals):
    portal = await portals.open(session_absolute_timeout=ms(600))
    login = await portal.login(await portal.user())
    token = login["access_token"]
    assert await portal.signed_in(token)
    portals.clock.advance(ms(300))
    assert await portal.signed_in(token)

    portals.clock.advance(ms(300))  # in use all along, and now as old as the timeout

    assert not await portal.signed_in(token)
    refreshed = await portal.client.post(
        "/auth/refresh", json={"refresh_token": login["refresh_token"]}
    )
    assert refreshed.status_code == 401


async def test_rest_logout_ends_the_session(portals: Portals):
    portal = await portals.open()
    login = await portal.login(await portal.user())
    headers = {"Authorization": f"Bearer {login['access_token']}"}

    response = await portal.client.post("/auth/logout", headers=headers)

    assert response.status_code == 204
    assert not await portal.signed_in(login["access_token"])
    again = await portal.client.post("/auth/logout", headers=headers)
    assert again.status_code == 401
    assert again.json()["error"]["code"] == "UNAUTHENTICATED"
    # A bare POST is what a cross-site form could send: refused before anything else.
    anonymous = await portal.client.post("/auth/logout")
    assert anonymous.status_code == 400
    assert anonymous.json()["error"]["code"] == "CSRF_REJECTED"
    anonymous = await portal.client.post("/auth/logout", json={})
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "UNAUTHENTICATED"


async def test_own_revocation_beats_the_check_cache_of_the_app(portals: Portals):
    portal = await portals.open(session_check_cache_seconds=5)
    email = await portal.user()
    first, second = await portal.login(email), await portal.login(email)
    assert await portal.signed_in(first["access_token"])  # now cached as alive

    await portal.data("mutation { logoutEverywhere }", token=second["access_token"])

    assert not await portal.signed_in(first["access_token"])


@pytest.mark.postgres
async def test_session_check_cache_is_per_app(pg_url: str, signing_key: bytes):
    """Another gateway instance sees a revocation once its cached answer is stale."""
    portals = Portals(pg_url, REDIS_URL, signing_key)
    async with portals.stack:
        ours = await portals.open(session_check_cache_seconds=0.5)
        theirs = await portals.open(session_check_cache_seconds=0.5)
        token = (await ours.login(await ours.user()))["access_token"]
        assert await theirs.signed_in(token)

        await ours.data("mutation { logout }", token=token)

        assert not await ours.signed_in(token)
        assert await theirs.signed_in(token)  # its answer, cached for 0.5 s
        portals.clock.advance(ms(500))
        assert not await theirs.signed_in(token)


@pytest.mark.postgres
async def test_sessions_survive_a_redis_flush_but_revocations_stand(
    pg_url: str, signing_key: bytes
):
    """Redis keeps nothing on disk: after FLUSHDB the sessions table vouches for sessions."""
    portals = Portals(pg_url, REDIS_URL, signing_key)
    async with portals.stack:
        portal = await portals.open()
        email = await portal.user()
        kept, ended = await portal.login(email), await portal.login(email)
        await portal.data("mutation { logout }", token=ended["access_token"])
        client = portal.services.redis
        assert client is not None

        await client.flushdb()

        assert await portal.signed_in(kept["access_token"])
        assert not await portal.signed_in(ended["access_token"])
        # Copied back to Redis, and revocable there as before.
        assert await client.exists(f"kabinet:session:{kept['session_id']}")
        await portal.data("mutation { logout }", token=kept["access_token"])
        await client.flushdb()
        assert not await portal.signed_in(kept["access_token"])


async def test_last_seen_reaches_the_table_at_most_once_a_minute(portals: Portals):
    portal = await portals.open()
    login = await portal.login(await portal.user())
    session_id = uuid.UUID(login["session_id"])

    async def table_last_seen() -> Any:
        async with portal.services.db.connect() as conn:
            stmt = select(Session.last_seen_at).where(Session.id == session_id)
            return (await conn.execute(stmt)).scalar_one()

    opened = await table_last_seen()
    for _ in range(3):
        portals.clock.advance(timedelta(seconds=10))
        assert await portal.signed_in(login["access_token"])
    assert await table_last_seen() == opened
    stored = await portal.services.auth.sessions.store.get(session_id)
    assert stored is not None
    assert stored.last_seen_at > opened

    portals.clock.advance(timedelta(seconds=30))  # a minute since the table was written
    assert await portal.signed_in(login["access_token"])
    assert await table_last_seen() == portals.clock.now()
