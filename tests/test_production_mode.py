"""What a production deployment shows the world, end to end through the real app.

Production (`env="production"`) turns GraphiQL, introspection and "did you mean"
suggestions off; development has all three. Persisted queries (APQ, and the safelist
mode), CORS and CSRF prevention are checked here over HTTP as a browser or client would
meet them; tests/test_persisted.py covers the store itself.
"""

import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import redis.asyncio
from starlette.applications import Starlette

from gateway.app import create_app
from gateway.cli import main
from gateway.graphiql import MOUNT_NAME
from gateway.persisted import REDIS_PREFIX, SafelistError, sha256_hex
from gateway.settings import Settings
from tests.conftest import DEMO_PASSWORD, TEST_REDIS_URL, make_settings, statements
from tests.test_gateway_limits import Gateways, codes, sign_in

REDIS_URL = TEST_REDIS_URL
GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
JSON = "application/json"
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
PORTAL = "https://portal.example.com"
ELSEWHERE = "https://evil.example.net"

TARIFFS = "{ tariffs { id name } }"
INTROSPECTION = "{ __schema { types { name } } }"
MISSPELT = "{ tarifs { id } }"
REFRESH = 'mutation { refreshToken(token: "no-such-token") { accessToken } }'
# What a production GET carries (Apollo clients send it): a browser sends it cross-site only
# after a CORS preflight.
PREFLIGHT = {"Apollo-Require-Preflight": "true"}
ROUTER_SECRET = "router-secret-for-the-tests"
# A production app that serves its subgraph endpoints to a router with the secret.
WITH_ROUTER = {"env": "production", "router_secret": ROUTER_SECRET}
ROUTER = {"Kabinet-Router-Secret": ROUTER_SECRET}


async def open_client(gateways: Gateways, **settings: Any) -> httpx.AsyncClient:
    return await gateways.client(gateways.open(**settings))


@pytest_asyncio.fixture
async def gateways(sqlite_demo_url: str, signing_key: bytes) -> AsyncIterator[Gateways]:
    opened = Gateways(sqlite_demo_url, signing_key)
    async with opened.stack:
        yield opened


def app_of(client: httpx.AsyncClient) -> Starlette:
    return client._transport.app  # type: ignore[attr-defined]


def apq(sha: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha}}


async def get_persisted(client: httpx.AsyncClient, sha: str) -> httpx.Response:
    params = {"extensions": json.dumps(apq(sha))}
    return await client.get("/graphql", params=params, headers=PREFLIGHT)


def headers_for(path: str) -> dict[str, str]:
    """A subgraph path answers the router only: its requests carry the secret."""
    return ROUTER if path.startswith("/subgraphs/") else {}


# Production switches ---------------------------------------------------------------------


def test_production_refuses_to_start_without_an_explicit_signing_key(
    sqlite_demo_url: str, monkeypatch: pytest.MonkeyPatch
):
    for name in ("KABINET_JWT_PRIVATE_KEY", "KABINET_JWT_PRIVATE_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(env="production", database_url=sqlite_demo_url, single_instance=True)
    with pytest.raises(RuntimeError, match="production needs KABINET_JWT_PRIVATE_KEY"):
        create_app(settings)


async def test_production_refuses_to_start_on_embedded_stores(
    sqlite_demo_url: str, pg_url: str, signing_key: bytes
):
    """The attack: several production instances on SQLite and in-process sessions, where a
    session revoked on one lives on in the others. They do not start."""
    key = signing_key.decode()
    on_sqlite = Settings(env="production", database_url=sqlite_demo_url, jwt_private_key=key)
    with pytest.raises(RuntimeError, match="production needs PostgreSQL: set KABINET_DATABASE_URL"):
        create_app(on_sqlite)
    without_redis = Settings(env="production", database_url=pg_url, jwt_private_key=key)
    with pytest.raises(RuntimeError, match=r"production needs Redis .*: set KABINET_REDIS_URL"):
        create_app(without_redis)

    shared = create_app(without_redis.model_copy(update={"redis_url": REDIS_URL}))
    alone = create_app(on_sqlite.model_copy(update={"single_instance": True}))
    for app in (shared, alone):
        await app.state.services.aclose()


def test_demo_refuses_to_run_in_production(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    database = tmp_path / "kabinet.db"
    monkeypatch.setenv("KABINET_ENV", "production")
    monkeypatch.setenv("KABINET_DATABASE_URL", f"sqlite+aiosqlite:///{database}")
    with pytest.raises(SystemExit, match="kabinet demo refuses KABINET_ENV=production"):
        main(["demo"])
    assert not database.exists()  # nothing was written


async def test_production_serves_no_graphiql_page_or_assets(gateways: Gateways):
    client = await open_client(gateways, env="production")

    # A client asking only for HTML is told what it can have.
    html_only = await client.get("/graphql", headers={"Accept": "text/html"})
    assert html_only.status_code == 406
    assert html_only.headers["content-type"] == JSON
    assert codes(html_only) == ["NOT_ACCEPTABLE"]
    # A browser also accepts */*: it gets a GraphQL-over-HTTP answer in JSON, refusing a
    # GET that a cross-site page could have sent.
    browser = await client.get("/graphql", headers={"Accept": BROWSER_ACCEPT})
    assert browser.status_code == 400
    assert browser.headers["content-type"] == JSON
    assert codes(browser) == ["CSRF_REJECTED"]
    assert "<html" not in browser.text
    for asset in ("graphiql.min.js", "graphiql.min.css", MOUNT_NAME):
        response = await client.get(f"/graphiql/assets/{asset}")
        assert response.status_code == 404, asset


async def test_development_serves_graphiql_and_its_assets(gateways: Gateways):
    client = await open_client(gateways, env="development")
    page = await client.get("/graphql", headers={"Accept": BROWSER_ACCEPT})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "GraphiQL" in page.text
    for asset in ("graphiql.min.js", MOUNT_NAME):
        response = await client.get(f"/graphiql/assets/{asset}")
        assert response.status_code == 200, asset


@pytest.mark.parametrize("path", ["/graphql", "/subgraphs/customers/graphql"])
async def test_production_refuses_introspection(gateways: Gateways, path: str):
    client = await open_client(gateways, **WITH_ROUTER)
    for query in (INTROSPECTION, '{ __type(name: "Tariff") { fields { name } } }'):
        response = await client.post(path, json={"query": query}, headers=headers_for(path))
        assert response.status_code == 200
        assert "data" not in response.json()
        assert codes(response) == ["INTROSPECTION_DISABLED"]
    # __typename is not introspection: clients (Apollo's cache) add it everywhere.
    typename = await client.post(path, json={"query": "{ __typename }"}, headers=headers_for(path))
    assert typename.json() == {"data": {"__typename": "Query"}}


async def test_development_allows_introspection(gateways: Gateways):
    client = await open_client(gateways, env="development")
    response = await client.post("/graphql", json={"query": INTROSPECTION})
    assert response.status_code == 200
    names = {t["name"] for t in response.json()["data"]["__schema"]["types"]}
    assert {"Query", "Mutation", "Tariff", "Invoice"} <= names


@pytest.mark.parametrize(
    ("query", "suggestion"),
    [
        (MISSPELT, "Did you mean 'tariffs'?"),
        ("{ tariffs(includeArchive: true) { id } }", "Did you mean 'includeArchived'?"),
        ("{ tariffs { nme } }", "Did you mean 'name'?"),
    ],
    ids=["field", "argument", "nested-field"],
)
@pytest.mark.parametrize("env", ["production", "development"])
async def test_suggestions_only_in_development(
    gateways: Gateways, env: str, query: str, suggestion: str
):
    client = await open_client(gateways, env=env)
    response = await client.post("/graphql", json={"query": query})
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    if env == "production":
        assert "Did you mean" not in error["message"]
    else:
        assert suggestion in error["message"]


async def test_production_switches_are_settings(gateways: Gateways):
    client = await open_client(
        gateways, env="production", introspection=True, field_suggestions=True, graphiql=True
    )
    assert "data" in (await client.post("/graphql", json={"query": INTROSPECTION})).json()
    misspelt = await client.post("/graphql", json={"query": MISSPELT})
    assert "Did you mean 'tariffs'?" in misspelt.json()["errors"][0]["message"]
    page = await client.get("/graphql", headers={"Accept": "text/html"})
    assert page.headers["content-type"].startswith("text/html")


# Automatic persisted queries -------------------------------------------------------------


async def test_apq_over_post_and_get(gateways: Gateways):
    client = await open_client(gateways, env="production")
    sha = sha256_hex(TARIFFS)

    unknown = await client.post("/graphql", json={"extensions": apq(sha)})
    # Apollo clients retry with the full query on exactly this answer.
    assert unknown.status_code == 200
    assert unknown.json() == {
        "errors": [
            {
                "message": "PersistedQueryNotFound",
                "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
            }
        ]
    }
    unknown_get = await get_persisted(client, sha)
    assert codes(unknown_get) == ["PERSISTED_QUERY_NOT_FOUND"]

    registered = await client.post("/graphql", json={"query": TARIFFS, "extensions": apq(sha)})
    assert registered.status_code == 200
    tariffs = registered.json()["data"]["tariffs"]
    assert tariffs

    by_post = await client.post("/graphql", json={"extensions": apq(sha)})
    by_get = await get_persisted(client, sha)
    for response in (by_post, by_get):
        assert response.status_code == 200
        assert response.json() == {"data": {"tariffs": tariffs}}


async def test_apq_hash_must_match_the_query(gateways: Gateways):
    client = await open_client(gateways, env="production")
    wrong = sha256_hex("{ __typename }")

    response = await client.post("/graphql", json={"query": TARIFFS, "extensions": apq(wrong)})

    assert response.status_code == 400
    assert codes(response) == ["BAD_REQUEST"]
    assert "does not match" in response.json()["errors"][0]["message"]
    # Nothing was registered under either hash.
    for sha in (wrong, sha256_hex(TARIFFS)):
        refused = await client.post("/graphql", json={"extensions": apq(sha)})
        assert codes(refused) == ["PERSISTED_QUERY_NOT_FOUND"]


async def test_a_persisted_mutation_cannot_run_over_get(gateways: Gateways):
    client = await open_client(gateways, env="production")
    sha = sha256_hex(REFRESH)
    registered = await client.post("/graphql", json={"query": REFRESH, "extensions": apq(sha)})
    assert codes(registered) == ["UNAUTHENTICATED"]  # it ran, over POST

    response = await get_persisted(client, sha)

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert codes(response) == ["METHOD_NOT_ALLOWED"]


async def test_apq_registrations_reach_every_instance_through_redis(gateways: Gateways):
    """Through the cache Redis, an instance apart from the sessions' one (its eviction
    policy may drop registrations, never sessions)."""
    # A query text of this test's own, so its key is too.
    query = f"query Tariffs{secrets.token_hex(4)} {{ tariffs {{ id }} }}"
    sha = sha256_hex(query)
    shared = {"redis_url": REDIS_URL, "cache_redis_url": REDIS_URL}
    one = await open_client(gateways, env="production", **shared)
    other = await open_client(gateways, env="production", **shared)
    store = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        assert codes(await get_persisted(other, sha)) == ["PERSISTED_QUERY_NOT_FOUND"]
        registered = await one.post("/graphql", json={"query": query, "extensions": apq(sha)})
        assert registered.status_code == 200

        response = await get_persisted(other, sha)

        assert response.json() == registered.json()
    finally:
        await store.delete(f"{REDIS_PREFIX}{sha}")
        await store.aclose()


# Safelist --------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def safelisted(gateways: Gateways, tmp_path: Path) -> httpx.AsyncClient:
    path = tmp_path / "persisted-queries.json"
    path.write_text(json.dumps({sha256_hex(q): q for q in (TARIFFS, REFRESH)}))
    return await open_client(
        gateways, env="production", persisted_queries_only=True, persisted_queries_file=path
    )


async def test_safelist_runs_listed_operations_by_hash_or_in_full(safelisted: httpx.AsyncClient):
    sha = sha256_hex(TARIFFS)
    answers = [
        await safelisted.post("/graphql", json={"extensions": apq(sha)}),
        await get_persisted(safelisted, sha),
        await safelisted.post("/graphql", json={"query": TARIFFS}),
        await safelisted.post("/graphql", json={"query": TARIFFS, "extensions": apq(sha)}),
    ]
    for response in answers:
        assert response.status_code == 200, response.text
        assert response.json()["data"]["tariffs"]
    mutation = await safelisted.post("/graphql", json={"extensions": apq(sha256_hex(REFRESH))})
    assert codes(mutation) == ["UNAUTHENTICATED"]  # listed: it ran


@pytest.mark.parametrize(
    "payload",
    [
        {"query": "{ tariffs { id } }"},
        {"extensions": apq(sha256_hex("{ tariffs { id } }"))},
        {"query": "{ tariffs { id } }", "extensions": apq(sha256_hex("{ tariffs { id } }"))},
        {"query": INTROSPECTION},
    ],
    ids=["query", "hash", "query-and-hash", "introspection"],
)
async def test_safelist_refuses_everything_else(
    safelisted: httpx.AsyncClient, payload: dict[str, Any]
):
    with statements(app_of(safelisted)) as ran:
        response = await safelisted.post("/graphql", json=payload)

    assert response.status_code == 400
    assert codes(response) == ["PERSISTED_QUERY_NOT_ALLOWED"]
    assert ran == []
    # Nothing was registered: the hash alone is still refused.
    unlisted = {"extensions": apq(sha256_hex("{ tariffs { id } }"))}
    again = await safelisted.post("/graphql", json=unlisted)
    assert codes(again) == ["PERSISTED_QUERY_NOT_ALLOWED"]


def test_safelist_mode_needs_its_file(sqlite_demo_url: str, signing_key: bytes, tmp_path: Path):
    with pytest.raises(SafelistError, match="needs persisted_queries_file"):
        create_app(make_settings(sqlite_demo_url, signing_key, persisted_queries_only=True))
    corrupt = tmp_path / "persisted-queries.json"
    corrupt.write_text(json.dumps({sha256_hex("{ me { id } }"): TARIFFS}))
    with pytest.raises(SafelistError, match="is not the sha256 of its query"):
        create_app(
            make_settings(
                sqlite_demo_url,
                signing_key,
                persisted_queries_only=True,
                persisted_queries_file=corrupt,
            )
        )


# CORS ------------------------------------------------------------------------------------


def preflight_headers(origin: str, request_headers: str = "authorization,content-type"):
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": request_headers,
    }


@pytest.mark.parametrize("path", ["/graphql", "/auth/refresh"])
async def test_preflight_from_a_listed_origin_is_allowed_and_cached(gateways: Gateways, path: str):
    client = await open_client(gateways, env="production", cors_origins=[PORTAL])

    response = await client.options(path, headers=preflight_headers(PORTAL))

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == PORTAL
    assert response.headers["access-control-max-age"] == "600"
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = {
        h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")
    }
    assert {"authorization", "content-type", "apollo-require-preflight"} <= allowed
    # Tokens travel in headers: no credentials unless the refresh cookie is on.
    assert "access-control-allow-credentials" not in response.headers


async def test_preflight_from_another_origin_or_for_other_headers_is_refused(
    gateways: Gateways,
):
    client = await open_client(gateways, env="production", cors_origins=[PORTAL])

    for headers in (
        preflight_headers(ELSEWHERE),
        preflight_headers("http://portal.example.com"),  # not the same origin: scheme
        preflight_headers(PORTAL, "authorization,x-custom"),
    ):
        response = await client.options("/graphql", headers=headers)
        assert response.status_code == 400, headers
        if headers["Origin"] != PORTAL:
            assert "access-control-allow-origin" not in response.headers


async def test_responses_to_a_listed_origin_expose_the_rate_limit_headers(gateways: Gateways):
    client = await open_client(gateways, env="production", cors_origins=[PORTAL])

    response = await client.post("/graphql", json={"query": TARIFFS}, headers={"Origin": PORTAL})

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == PORTAL
    assert "Origin" in response.headers["vary"]
    exposed = {
        h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
    }
    assert {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "retry-after"} <= exposed
    assert "ratelimit-limit" in response.headers
    other = await client.post("/graphql", json={"query": TARIFFS}, headers={"Origin": ELSEWHERE})
    assert "access-control-allow-origin" not in other.headers


def test_create_app_refuses_the_wildcard_origin(sqlite_demo_url: str, signing_key: bytes):
    with pytest.raises(ValueError, match="'\\*' is not allowed"):
        create_app(make_settings(sqlite_demo_url, signing_key, cors_origins=["*"]))


def test_create_app_refuses_the_wildcard_among_other_origins(
    sqlite_demo_url: str, signing_key: bytes
):
    with pytest.raises(ValueError, match="'\\*' is not allowed"):
        create_app(make_settings(sqlite_demo_url, signing_key, cors_origins=[PORTAL, "*"]))


async def test_refresh_cookie_allows_credentials_for_the_listed_origin_only(gateways: Gateways):
    client = await open_client(
        gateways, env="production", cors_origins=[PORTAL], refresh_cookie=True
    )

    preflight = await client.options(
        "/auth/refresh", headers=preflight_headers(PORTAL, "content-type")
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == PORTAL  # never "*"
    assert preflight.headers["access-control-allow-credentials"] == "true"

    login = await client.post(
        "/auth/login",
        json={"email": "alice@example.com", "password": DEMO_PASSWORD},
        headers={"Origin": PORTAL},
    )
    assert login.status_code == 200
    assert login.headers["access-control-allow-origin"] == PORTAL
    assert login.headers["access-control-allow-credentials"] == "true"
    assert "__Host-kabinet_refresh=" in login.headers["set-cookie"]

    refused = await client.options(
        "/auth/refresh", headers=preflight_headers(ELSEWHERE, "content-type")
    )
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    other = await client.post(
        "/auth/login",
        json={"email": "bob@example.com", "password": DEMO_PASSWORD},
        headers={"Origin": ELSEWHERE},
    )
    # Without an allow-origin naming it, a browser shows the other site nothing.
    assert "access-control-allow-origin" not in other.headers


# CSRF ------------------------------------------------------------------------------------

SIMPLE_CONTENT_TYPES = [
    "text/plain",
    "text/plain;charset=UTF-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "Text/Plain",
    None,  # no body type at all
]
POST_PATHS = [
    "/graphql",
    "/subgraphs/identity/graphql",
    "/auth/login",
    "/auth/refresh",
    "/auth/logout",
]


@pytest.mark.parametrize("content_type", SIMPLE_CONTENT_TYPES)
async def test_simple_posts_are_refused_on_every_post_route(
    gateways: Gateways, content_type: str | None
):
    client = await open_client(gateways, env="production")
    headers = {"Content-Type": content_type} if content_type else {}
    body = json.dumps({"query": REFRESH, "email": "alice@example.com", "password": "x"})

    with statements(app_of(client)) as ran:
        for path in POST_PATHS:
            response = await client.post(path, content=body, headers=headers)
            assert response.status_code == 400, path
            if path.endswith("/graphql"):
                assert codes(response) == ["CSRF_REJECTED"], path
            else:
                assert response.json()["error"]["code"] == "CSRF_REJECTED", path
            assert "ratelimit-limit" not in response.headers

    assert ran == []


@pytest.mark.parametrize(
    "header",
    [
        {"Apollo-Require-Preflight": "true"},
        {"X-Apollo-Operation-Name": "Tariffs"},
        {"X-Requested-With": "XMLHttpRequest"},
        {"Authorization": "Bearer not-a-token"},
    ],
    ids=[
        "apollo-require-preflight",
        "x-apollo-operation-name",
        "x-requested-with",
        "authorization",
    ],
)
async def test_a_non_simple_header_lets_a_post_past_csrf_prevention(
    gateways: Gateways, header: dict[str, str]
):
    client = await open_client(gateways, env="production")
    body = json.dumps({"query": TARIFFS})

    response = await client.post(
        "/graphql", content=body, headers={"Content-Type": "text/plain", **header}
    )

    assert codes(response) != ["CSRF_REJECTED"]
    # Past CSRF prevention: refused for what it is (not JSON, or a bad token).
    expected = "UNAUTHENTICATED" if "Authorization" in header else "UNSUPPORTED_MEDIA_TYPE"
    assert codes(response) == [expected]


async def test_json_posts_need_no_extra_header(gateways: Gateways):
    client = await open_client(gateways, env="production")
    response = await client.post("/graphql", json={"query": TARIFFS})
    assert response.status_code == 200
    assert response.json()["data"]["tariffs"]


BOTH = f"query Q {{ __typename }} {REFRESH.replace('mutation', 'mutation M')}"


@pytest.mark.parametrize("path", ["/graphql", "/subgraphs/identity/graphql"])
@pytest.mark.parametrize(
    "params",
    [{"query": REFRESH}, {"query": BOTH, "operationName": "M"}],
    ids=["mutation", "named-mutation"],
)
async def test_a_get_never_runs_a_mutation(gateways: Gateways, path: str, params: dict[str, str]):
    client = await open_client(gateways, **WITH_ROUTER)
    headers = PREFLIGHT | headers_for(path)

    with statements(app_of(client)) as ran:
        response = await client.get(path, params=params, headers=headers)

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert codes(response) == ["METHOD_NOT_ALLOWED"]
    assert ran == []
    # The query of the same document runs over GET.
    query = await client.get(path, params={"query": BOTH, "operationName": "Q"}, headers=headers)
    assert query.json() == {"data": {"__typename": "Query"}}


# Federation endpoints (issue 12, points 1 and 2) --------------------------------------------

ENTITIES = "query($r: [_Any!]!) { _entities(representations: $r) { ... on Tariff { code } } }"
SDL = "{ _service { sdl } }"
ARCHIVED = "{ tariffs(includeArchived: true) { id isActive } }"


@pytest_asyncio.fixture
async def pg_gateways(pg_demo_url: str, signing_key: bytes) -> AsyncIterator[Gateways]:
    opened = Gateways(pg_demo_url, signing_key)
    async with opened.stack:
        yield opened


async def archived_tariff(client: httpx.AsyncClient) -> str:
    """The global id of an archived tariff, which only staff may list."""
    staff = await sign_in(client, "operator@example.com")
    response = await client.post("/graphql", json={"query": ARCHIVED}, headers=staff)
    return next(t["id"] for t in response.json()["data"]["tariffs"] if not t["isActive"])


def entities(tariff: str, count: int = 1) -> dict[str, Any]:
    return {"query": ENTITIES, "variables": {"r": [{"__typename": "Tariff", "id": tariff}] * count}}


@pytest.mark.postgres
async def test_production_subgraph_endpoints_are_off_without_a_router_secret(
    pg_gateways: Gateways,
):
    """The attack: read the schema through `_service { sdl }` with introspection off, and an
    archived tariff through `_entities`, from a subgraph endpoint or /graphql."""
    client = await open_client(pg_gateways, env="production")
    tariff = await archived_tariff(client)
    for payload in ({"query": SDL}, entities(tariff)):
        with statements(app_of(client)) as ran:
            refused = await client.post("/subgraphs/customers/graphql", json=payload)
        assert refused.status_code == 403
        assert codes(refused) == ["ROUTER_ONLY"]
        assert "KABINET_ROUTER_SECRET" in refused.json()["errors"][0]["message"]
        assert ran == []
    # A subgraph served alone in production needs the secret to start at all.
    settings = make_settings(pg_gateways.database_url, pg_gateways.signing_key, env="production")
    with pytest.raises(RuntimeError, match="KABINET_ROUTER_SECRET"):
        create_app(settings, subgraph="customers")


@pytest.mark.postgres
async def test_production_subgraph_endpoints_answer_only_the_router(pg_gateways: Gateways):
    client = await open_client(pg_gateways, **WITH_ROUTER)
    tariff = await archived_tariff(client)
    path = "/subgraphs/customers/graphql"
    for payload in ({"query": SDL}, entities(tariff)):
        for headers in ({}, {"Kabinet-Router-Secret": "a-guess"}, PREFLIGHT):
            with statements(app_of(client)) as ran:
                refused = await client.post(path, json=payload, headers=headers)
            assert refused.status_code == 403
            assert codes(refused) == ["ROUTER_ONLY"]
            assert "data" not in refused.json()
            assert ran == []
    sdl = await client.post(path, json={"query": SDL}, headers=ROUTER)
    assert "type Tariff" in sdl.json()["data"]["_service"]["sdl"]
    fetched = await client.post(path, json=entities(tariff), headers=ROUTER)
    assert fetched.json()["data"]["_entities"][0]["code"]


@pytest.mark.postgres
@pytest.mark.parametrize("settings", [{"env": "production"}, WITH_ROUTER], ids=["off", "router"])
async def test_graphql_never_exposes_entities_or_service(
    pg_gateways: Gateways, settings: dict[str, str]
):
    """/graphql is the clients' schema: no federation fields, whatever headers come with it."""
    client = await open_client(pg_gateways, **settings)
    tariff = await archived_tariff(client)
    for payload in ({"query": SDL}, entities(tariff)):
        for headers in ({}, ROUTER):
            response = await client.post(
                "/graphql", json=payload, headers=headers | {"Accept": GRAPHQL_RESPONSE_JSON}
            )
            assert response.status_code == 400
            assert set(codes(response)) == {"GRAPHQL_VALIDATION_FAILED"}
            messages = [error["message"] for error in response.json()["errors"]]
            assert any(message.startswith("Cannot query field '_") for message in messages)
            assert "data" not in response.json()


@pytest.mark.postgres
async def test_entities_count_their_representations_and_cost_per_representation(
    pg_gateways: Gateways,
):
    """The attack: thousands of representations in one 100 KB body, ten operations a batch,
    once costed as one plain list. Now a client without the secret is refused, and the
    router itself is held to KABINET_GRAPHQL_MAX_REPRESENTATIONS and to the cost limit,
    each representation costing its selection, before anything runs."""
    client = await open_client(pg_gateways, **WITH_ROUTER, graphql_max_representations=100)
    tariff = await archived_tariff(client)
    path = "/subgraphs/customers/graphql"
    accept = {"Accept": GRAPHQL_RESPONSE_JSON}
    flood = entities(tariff, 2000)
    assert len(json.dumps(flood, separators=(",", ":"))) < 100_000

    anonymous = await client.post(path, json=flood, headers=accept)
    assert anonymous.status_code == 403
    assert codes(anonymous) == ["ROUTER_ONLY"]

    with statements(app_of(client)) as ran:
        counted = await client.post(path, json=flood, headers=ROUTER | accept)
        batched = await client.post(
            path, json=[entities(tariff, 200)] * 10, headers=ROUTER | accept
        )
    assert counted.status_code == 400
    assert codes(counted) == ["TOO_MANY_REPRESENTATIONS"]
    assert counted.json()["errors"][0]["extensions"]["representations"] == 2000
    assert batched.status_code == 400
    assert codes(batched) == ["BATCHING_DISABLED"]
    assert ran == []

    # Aliases add up: two fields of 60 each are 120 representations.
    aliased = (
        "query($r: [_Any!]!) { a: _entities(representations: $r) { ... on Tariff { code } }"
        " b: _entities(representations: $r) { ... on Tariff { name } } }"
    )
    twice = {"query": aliased, "variables": entities(tariff, 60)["variables"]}
    response = await client.post(path, json=twice, headers=ROUTER | accept)
    assert codes(response) == ["TOO_MANY_REPRESENTATIONS"]
    assert response.json()["errors"][0]["extensions"]["representations"] == 120

    # Within the count, each representation pays for what it selects: 1 + 100 x 61 > 5000.
    staff = await sign_in(client, "operator@example.com")
    customer = await client.post(
        "/graphql",
        json={"query": "{ customers(first: 1) { edges { node { id } } } }"},
        headers=staff,
    )
    customer_id = customer.json()["data"]["customers"]["edges"][0]["node"]["id"]
    costly = {
        "query": "query($r: [_Any!]!) { _entities(representations: $r) { ... on Customer {"
        " invoices(first: 20) { edges { node { id number status } } } } } }",
        "variables": {"r": [{"__typename": "Customer", "id": customer_id}] * 100},
    }
    with statements(app_of(client)) as ran:
        response = await client.post(
            "/subgraphs/billing/graphql", json=costly, headers=ROUTER | staff | accept
        )
    assert response.status_code == 400
    assert codes(response) == ["QUERY_TOO_COSTLY"]
    assert response.json()["errors"][0]["extensions"]["cost"] == 1 + 100 * (1 + 1 + 20 * 4)
    assert not any("invoices" in sql for sql in ran)

    # What a router really sends passes.
    answered = await client.post(path, json=entities(tariff, 3), headers=ROUTER | accept)
    assert answered.status_code == 200
    assert len(answered.json()["data"]["_entities"]) == 3


# graphql-cop's findings (issue 12, point 15) ----------------------------------------------

OVERLOADED = "query cop { __typename @aa@aa@aa@aa@aa@aa@aa@aa@aa@aa }"


@pytest.mark.parametrize("path", ["/graphql", "/subgraphs/customers/graphql"])
async def test_production_refuses_batches_unless_configured(gateways: Gateways, path: str):
    """graphql-cop: array-based batching. Off in production unless KABINET_GRAPHQL_MAX_BATCH."""
    batch = [{"query": TARIFFS}] * 10
    client = await open_client(gateways, **WITH_ROUTER)
    with statements(app_of(client)) as ran:
        refused = await client.post(path, json=batch, headers=headers_for(path))
    assert refused.status_code == 400
    assert codes(refused) == ["BATCHING_DISABLED"]
    assert ran == []
    single = await client.post(path, json=batch[0], headers=headers_for(path))
    assert single.json()["data"]["tariffs"]

    allowed = await open_client(gateways, **WITH_ROUTER, graphql_max_batch=10)
    answered = await allowed.post(path, json=batch, headers=headers_for(path))
    assert answered.status_code == 200
    assert [answer["data"]["tariffs"] for answer in answered.json()] == [
        single.json()["data"]["tariffs"]
    ] * 10


@pytest.mark.parametrize("path", ["/graphql", "/subgraphs/customers/graphql"])
async def test_production_stops_directive_overloading_at_the_first_error(
    gateways: Gateways, path: str
):
    """graphql-cop: ten repeated unknown directives came back as ten errors."""
    client = await open_client(gateways, **WITH_ROUTER)
    response = await client.post(
        path,
        json={"query": OVERLOADED},
        headers=headers_for(path) | {"Accept": GRAPHQL_RESPONSE_JSON},
    )
    assert response.status_code == 400
    assert codes(response) == ["DIRECTIVE_REPEATED"]
    assert "'@aa'" in response.json()["errors"][0]["message"]


@pytest.mark.parametrize("path", ["/graphql", "/subgraphs/customers/graphql"])
async def test_production_get_needs_a_preflight_forcing_header(gateways: Gateways, path: str):
    """graphql-cop: a plain cross-site `GET /graphql?query=...` executed. A browser adds
    none of these headers (nor a JSON content type) without a CORS preflight."""
    client = await open_client(gateways, **WITH_ROUTER, cors_origins=[PORTAL])
    query = {"query": TARIFFS}
    cross_site = {"Origin": ELSEWHERE} | headers_for(path)
    with statements(app_of(client)) as ran:
        refused = await client.get(path, params=query, headers=cross_site)
    assert refused.status_code == 400
    assert refused.headers["content-type"] == JSON
    assert codes(refused) == ["CSRF_REJECTED"]
    assert ran == []
    for forcing in (PREFLIGHT, {"Content-Type": JSON}, {"X-Apollo-Operation-Name": "Q"}):
        answered = await client.get(path, params=query, headers=headers_for(path) | forcing)
        assert answered.status_code == 200, forcing
        assert answered.json()["data"]["tariffs"]
    # Development, or production that says so, runs a plain GET.
    for settings in ({"env": "development"}, WITH_ROUTER | {"graphql_get_needs_preflight": False}):
        plain = await open_client(gateways, **settings)
        answered = await plain.get(path, params=query, headers=headers_for(path))
        assert answered.status_code == 200, settings
