"""Gateway budgets and GraphQL limits end to end: the real app over HTTP, limits from settings.

tests/test_limits.py, test_hardening.py and test_persisted.py test each mechanism alone.
These prove the wiring: which requests spend which budget, what a refusal looks like on
the wire (status, code, headers), that a refused operation runs nothing (not one SQL
statement), that two gateway instances on one Redis share a budget, and what the
store-failure policy does while Redis is down.
"""

import json
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import redis.asyncio
from starlette.applications import Starlette

from domains.clock import ManualClock
from gateway.app import create_app
from tests.conftest import DEMO_PASSWORD, TEST_REDIS_URL, login, make_settings, statements

REDIS_URL = TEST_REDIS_URL
CLOSED_PORT_URL = "redis://127.0.0.1:1/0"
GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"

# It costs 1177 (tests/test_hardening.py::test_bench_query_costs).
DASHBOARD = (Path(__file__).resolve().parent.parent / "bench" / "dashboard.graphql").read_text()
# Public, and reads the database: tariffs 1 + 10 x (id, name).
TARIFFS = "{ tariffs { id name } }"
TARIFFS_COST = 21
ME = "{ me { email } }"  # 2
# A public mutation that reads the database and changes nothing for a token nobody holds.
REFRESH = 'refreshToken(token: "no-such-token") { accessToken }'


def random_ip() -> str:
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


class Gateways:
    """Opens apps on one database (and optionally Redis); closes them when the test ends.

    Their clock stands still: no budget refills while a test runs, however slowly, so the
    figures in the headers are exact.
    """

    def __init__(self, database_url: str, signing_key: bytes) -> None:
        self.database_url = database_url
        self.signing_key = signing_key
        self.clock = ManualClock()
        self.stack = AsyncExitStack()
        self.apps: list[Starlette] = []

    def open(self, **settings: Any) -> Starlette:
        app = create_app(
            make_settings(self.database_url, self.signing_key, **settings), clock=self.clock
        )
        self.stack.push_async_callback(app.state.services.aclose)
        self.apps.append(app)
        return app

    async def client(self, app: Starlette, ip: str | None = None) -> httpx.AsyncClient:
        """A client of `app` from one address (a new one unless given)."""
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=(ip or random_ip(), 50000)),
            base_url="http://testserver",
        )
        return await self.stack.enter_async_context(client)


@pytest_asyncio.fixture
async def gateways(sqlite_demo_url: str, signing_key: bytes) -> AsyncIterator[Gateways]:
    opened = Gateways(sqlite_demo_url, signing_key)
    async with opened.stack:
        yield opened


async def sign_in(client: httpx.AsyncClient, email: str) -> dict[str, str]:
    response = await client.post("/auth/login", json={"email": email, "password": DEMO_PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def post(
    client: httpx.AsyncClient,
    query: str,
    headers: dict[str, str] | None = None,
    path: str = "/graphql",
) -> httpx.Response:
    return await client.post(path, json={"query": query}, headers=headers or {})


def codes(response: httpx.Response) -> list[str]:
    return [error["extensions"]["code"] for error in response.json().get("errors", [])]


def assert_refused(response: httpx.Response, limit: int) -> int:
    """A GraphQL budget refusal: 429, RATE_LIMITED, Retry-After, RateLimit-*; its seconds."""
    assert response.status_code == 429, response.text
    body = response.json()
    assert "data" not in body, "refused before execution"
    [error] = body["errors"]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    seconds = error["extensions"]["retryAfter"]
    assert isinstance(seconds, int)
    assert seconds >= 1
    assert response.headers["retry-after"] == str(seconds)
    assert response.headers["ratelimit-limit"] == str(limit)
    assert 0 <= int(response.headers["ratelimit-remaining"]) <= limit
    assert int(response.headers["ratelimit-reset"]) >= 0
    return seconds


# Query cost budgets ----------------------------------------------------------------------


async def test_query_over_the_user_budget_is_429_with_retry_after_and_ratelimit_headers(
    gateways: Gateways,
):
    app = gateways.open(query_cost_per_user_per_minute=1500)
    client = await gateways.client(app)
    alice = await sign_in(client, "alice@example.com")

    allowed = await post(client, DASHBOARD, alice)

    assert allowed.status_code == 200, allowed.text
    assert "errors" not in allowed.json()
    # The user's budget is the tighter one: 1500 - 1177 left, full again 1177 x 40 ms later.
    assert allowed.headers["ratelimit-limit"] == "1500"
    assert allowed.headers["ratelimit-remaining"] == "323"
    assert allowed.headers["ratelimit-reset"] == "48"
    assert "retry-after" not in allowed.headers

    with statements(app) as ran:
        refused = await post(client, DASHBOARD, alice)
    seconds = assert_refused(refused, 1500)
    # 1177 - 323 = 854 units short, at 25 a second: 34.16 s, rounded up.
    assert seconds == 35
    assert refused.headers["ratelimit-remaining"] == "323"  # the refusal took nothing
    assert ran == [], "a refused operation runs no resolver"
    # The status does not depend on the media type the client accepts.
    again = await client.post(
        "/graphql",
        json={"query": DASHBOARD},
        headers={**alice, "Accept": GRAPHQL_RESPONSE_JSON},
    )
    assert again.headers["content-type"] == GRAPHQL_RESPONSE_JSON
    assert_refused(again, 1500)


async def test_budgets_are_weighted_by_cost(gateways: Gateways):
    app = gateways.open(query_cost_per_user_per_minute=1500)
    client = await gateways.client(app)
    alice = await sign_in(client, "alice@example.com")
    assert (await post(client, DASHBOARD, alice)).status_code == 200
    assert_refused(await post(client, DASHBOARD, alice), 1500)

    cheap = await post(client, ME, alice)

    assert cheap.status_code == 200
    assert cheap.json() == {"data": {"me": {"email": "alice@example.com"}}}
    assert cheap.headers["ratelimit-limit"] == "1500"
    # Cost 2, from what was left.
    assert cheap.headers["ratelimit-remaining"] == "321"


async def test_each_user_has_a_budget_of_their_own(gateways: Gateways):
    app = gateways.open(query_cost_per_user_per_minute=1500)
    client = await gateways.client(app)  # one address for both
    alice = await sign_in(client, "alice@example.com")
    bob = await sign_in(client, "bob@example.com")
    assert (await post(client, DASHBOARD, alice)).status_code == 200
    assert_refused(await post(client, DASHBOARD, alice), 1500)

    response = await post(client, DASHBOARD, bob)

    assert response.status_code == 200
    assert response.json()["data"]["me"]["email"] == "bob@example.com"
    assert response.headers["ratelimit-remaining"] == "323"


async def test_anonymous_callers_spend_their_address_budget_on_every_endpoint(
    gateways: Gateways,
):
    app = gateways.open(query_cost_per_ip_per_minute=50)
    client = await gateways.client(app)

    first = await post(client, TARIFFS)
    second = await client.get("/graphql", params={"query": TARIFFS})
    third = await post(client, TARIFFS, path="/subgraphs/customers/graphql")

    assert first.status_code == second.status_code == 200
    assert [r.headers["ratelimit-remaining"] for r in (first, second)] == ["29", "8"]
    assert_refused(third, 50)
    # Another address is not affected.
    elsewhere = await gateways.client(app)
    response = await post(elsewhere, TARIFFS)
    assert response.status_code == 200
    assert response.headers["ratelimit-remaining"] == "29"


async def test_an_ipv6_client_is_one_address_per_64_as_for_login(gateways: Gateways):
    app = gateways.open(query_cost_per_ip_per_minute=50)
    site = random.randrange(0x10000)
    network = f"2001:db8:{site:x}:{random.randrange(0xFFFF):x}"
    for host in ("1", "2"):
        client = await gateways.client(app, f"{network}::{host}")
        assert (await post(client, TARIFFS)).status_code == 200

    same_network = await gateways.client(app, f"{network}:ffff:ffff:ffff:ffff")
    assert_refused(await post(same_network, TARIFFS), 50)
    next_network = f"2001:db8:{site:x}:{int(network.rsplit(':', 1)[1], 16) + 1:x}::1"
    other = await post(await gateways.client(app, next_network), TARIFFS)
    assert other.status_code == 200


async def test_forwarded_for_names_the_client_only_behind_a_trusted_proxy(gateways: Gateways):
    """The attacks: behind a load balancer every client arrives from its address and all
    share one budget; and a client that is no proxy forges X-Forwarded-For for a fresh
    budget on each request. KABINET_TRUSTED_PROXIES names the balancers."""
    app = gateways.open(query_cost_per_ip_per_minute=50, trusted_proxies=["10.200.0.0/16"])
    balancer = await gateways.client(app, "10.200.3.4")

    def forwarded(chain: str) -> dict[str, str]:
        return {"X-Forwarded-For": chain}

    for _ in range(2):
        assert (await post(balancer, TARIFFS, forwarded("203.0.113.7"))).status_code == 200
    assert_refused(await post(balancer, TARIFFS, forwarded("203.0.113.7")), 50)
    # Another client behind the balancer has a budget of its own; a trusted hop in the
    # chain is skipped, the rightmost untrusted address is the client.
    other = await post(balancer, TARIFFS, forwarded("203.0.113.8, 10.200.9.9"))
    assert other.status_code == 200
    assert other.headers["ratelimit-remaining"] == "29"
    assert_refused(await post(balancer, TARIFFS, forwarded("203.0.113.7, 10.200.9.9")), 50)

    # From an address that is no trusted proxy, the header is ignored.
    direct = await gateways.client(app, "198.51.100.9")
    for n in range(2):
        assert (await post(direct, TARIFFS, forwarded(f"192.0.2.{n}"))).status_code == 200
    assert_refused(await post(direct, TARIFFS, forwarded("192.0.2.99")), 50)

    # Sessions record the forwarded client too.
    response = await balancer.post(
        "/auth/login",
        json={"email": "alice@example.com", "password": DEMO_PASSWORD},
        headers=forwarded("198.51.100.200"),
    )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    sessions = await balancer.post(
        "/graphql",
        json={"query": "{ mySessions { ipAddress current } }"},
        headers={"Authorization": f"Bearer {token}", **forwarded("198.51.100.200")},
    )
    [current] = [s for s in sessions.json()["data"]["mySessions"] if s["current"]]
    assert current["ipAddress"] == "198.51.100.200"


async def test_one_address_shares_its_budget_across_users(gateways: Gateways):
    app = gateways.open(query_cost_per_ip_per_minute=2000)
    office = await gateways.client(app)
    alice = await sign_in(office, "alice@example.com")
    bob = await sign_in(office, "bob@example.com")
    assert (await post(office, DASHBOARD, alice)).status_code == 200

    # Bob's own budget is untouched; the address's is not.
    assert_refused(await post(office, DASHBOARD, bob), 2000)
    home = await gateways.client(app)
    assert (await post(home, DASHBOARD, bob)).status_code == 200


async def test_requests_a_user_budget_refuses_do_not_spend_the_address_budget(
    gateways: Gateways,
):
    """One user over their budget must not lock out everyone behind the same address."""
    app = gateways.open(query_cost_per_user_per_minute=1500, query_cost_per_ip_per_minute=3000)
    office = await gateways.client(app)
    alice = await sign_in(office, "alice@example.com")
    bob = await sign_in(office, "bob@example.com")
    assert (await post(office, DASHBOARD, alice)).status_code == 200
    for _ in range(3):
        assert_refused(await post(office, DASHBOARD, alice), 1500)

    # The address has spent 1177 of 3000: room for Bob's dashboard.
    response = await post(office, DASHBOARD, bob)

    assert response.status_code == 200, response.text


async def test_a_batch_spends_per_operation(gateways: Gateways):
    app = gateways.open(query_cost_per_ip_per_minute=50)
    client = await gateways.client(app)

    response = await client.post("/graphql", json=[{"query": TARIFFS}] * 3)

    # The first two ran and are answered; the third is refused. The batch answers 200: a
    # client retrying it whole on 429 would run the first two again.
    assert response.status_code == 200
    first, second, third = response.json()
    assert len(first["data"]["tariffs"]) == len(second["data"]["tariffs"]) > 0
    assert [e["extensions"]["code"] for e in third["errors"]] == ["RATE_LIMITED"]
    assert response.headers["ratelimit-remaining"] == "8"
    assert int(response.headers["retry-after"]) >= 1


# Mutation budgets ------------------------------------------------------------------------


def mutation(fields: int) -> str:
    return "mutation { " + " ".join(f"m{n}: {REFRESH}" for n in range(fields)) + " }"


async def test_each_mutation_field_spends_one_unit_of_its_own_budget(gateways: Gateways):
    app = gateways.open(mutations_per_ip_per_minute=3, query_cost_per_ip_per_minute=50)
    client = await gateways.client(app)

    two = await post(client, mutation(2))
    one = await post(client, mutation(1))

    assert two.status_code == one.status_code == 200
    assert codes(two) == codes(one) == ["UNAUTHENTICATED"]  # executed, the token is unknown
    assert [r.headers["ratelimit-limit"] for r in (two, one)] == ["3", "3"]
    assert [r.headers["ratelimit-remaining"] for r in (two, one)] == ["1", "0"]
    with statements(app) as ran:
        refused = await post(client, mutation(1))
    assert_refused(refused, 3)
    assert ran == []
    # Queries spend another budget.
    query = await post(client, TARIFFS)
    assert query.status_code == 200
    assert query.headers["ratelimit-limit"] == "50"


async def test_queries_over_budget_do_not_stop_mutations(gateways: Gateways):
    app = gateways.open(mutations_per_ip_per_minute=3, query_cost_per_ip_per_minute=21)
    client = await gateways.client(app)
    assert (await post(client, TARIFFS)).status_code == 200
    assert_refused(await post(client, TARIFFS), 21)

    response = await post(client, mutation(1))

    assert response.status_code == 200
    assert codes(response) == ["UNAUTHENTICATED"]
    assert response.headers["ratelimit-limit"] == "3"


@pytest.mark.parametrize(
    "query",
    [
        mutation(4),
        # Fragments do not hide root fields from the count.
        "mutation { ...M } fragment M on Mutation { "
        + " ".join(f"m{n}: {REFRESH}" for n in range(4))
        + " }",
        "mutation { ... on Mutation { "
        + " ".join(f"m{n}: {REFRESH}" for n in range(2))
        + " } ...M } fragment M on Mutation { a: "
        + REFRESH
        + " b: "
        + REFRESH
        + " }",
    ],
    ids=["aliases", "fragment-spread", "inline-fragment"],
)
async def test_more_mutation_fields_than_the_budget_never_run(gateways: Gateways, query: str):
    app = gateways.open(mutations_per_ip_per_minute=3)
    client = await gateways.client(app)

    with statements(app) as ran:
        response = await post(client, query)

    seconds = assert_refused(response, 3)
    assert seconds == 60  # it never fits: wait a whole period
    assert ran == []


async def test_mutation_budgets_are_per_user_too(gateways: Gateways):
    app = gateways.open(mutations_per_user_per_minute=2)
    client = await gateways.client(app)
    alice = await sign_in(client, "alice@example.com")
    bob = await sign_in(client, "bob@example.com")
    revoke = 'mutation { a: revokeSession(id: "x") b: revokeSession(id: "y") }'

    spent = await post(client, revoke, alice)

    assert codes(spent) == ["NOT_FOUND"]
    assert spent.headers["ratelimit-remaining"] == "0"
    assert_refused(await post(client, 'mutation { revokeSession(id: "x") }', alice), 2)
    other = await post(client, revoke, bob)
    assert codes(other) == ["NOT_FOUND"]


async def test_graphql_login_over_its_budget_is_429_like_rest(gateways: Gateways):
    app = gateways.open(login_attempts_per_ip=1)
    client = await gateways.client(app)
    login = 'mutation { login(email: "nobody@example.com", password: "wrong") { sessionId } }'
    assert codes(await post(client, login)) == ["UNAUTHENTICATED"]

    response = await post(client, login)

    assert codes(response) == ["RATE_LIMITED"]
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) >= 1


# REST ------------------------------------------------------------------------------------


async def test_rest_invoices_spend_the_query_budget_graphql_spends(gateways: Gateways):
    app = gateways.open(query_cost_per_user_per_minute=1500)
    client = await gateways.client(app)
    alice = await sign_in(client, "alice@example.com")
    assert (await post(client, DASHBOARD, alice)).status_code == 200  # 323 left

    # A full page would fit a fresh budget, not what GraphQL left: refused before reading.
    with statements(app) as ran:
        refused = await client.get("/billing/invoices", params={"first": 100}, headers=alice)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "RATE_LIMITED"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["ratelimit-limit"] == "1500"
    assert refused.headers["ratelimit-remaining"] == "323"
    assert "ratelimit-reset" in refused.headers
    assert ran == []

    # Weighted: two invoices fit, and GraphQL then finds them spent.
    small = await client.get("/billing/invoices", params={"first": 2}, headers=alice)
    assert small.status_code == 200, small.text
    assert len(small.json()["invoices"]) == 2
    assert small.headers["ratelimit-limit"] == "1500"
    assert "retry-after" not in small.headers
    after = await post(client, ME, alice)
    assert after.status_code == 200
    assert int(after.headers["ratelimit-remaining"]) <= 310  # 323 - REST's page - 2


# Redis: shared budgets, and the store-failure policy ---------------------------------------


@pytest_asyncio.fixture
async def redis_client() -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


async def test_two_gateway_instances_on_one_redis_share_the_budget(
    gateways: Gateways, redis_client: redis.asyncio.Redis
):
    ip = random_ip()
    settings = {"redis_url": REDIS_URL, "query_cost_per_ip_per_minute": 50}
    one = await gateways.client(gateways.open(**settings), ip)
    other = await gateways.client(gateways.open(**settings), ip)
    try:
        first = await post(one, TARIFFS)
        second = await post(other, TARIFFS)

        assert first.status_code == second.status_code == 200
        assert [r.headers["ratelimit-remaining"] for r in (first, second)] == ["29", "8"]
        assert_refused(await post(one, TARIFFS), 50)
        assert_refused(await post(other, TARIFFS), 50)
        assert await redis_client.exists(f"kabinet:rl:query:ip:{ip}")
    finally:
        keys = [key async for key in redis_client.scan_iter(match=f"kabinet:rl:*:ip:{ip}")]
        if keys:
            await redis_client.delete(*keys)


async def test_redis_down_with_fail_open_lets_requests_through(
    gateways: Gateways, caplog: pytest.LogCaptureFixture
):
    app = gateways.open(redis_url=CLOSED_PORT_URL, rate_limit_on_store_failure="open")
    client = await gateways.client(app)

    for _ in range(2):
        response = await post(client, TARIFFS)
        assert response.status_code == 200, response.text
        assert len(response.json()["data"]["tariffs"]) > 0
    assert response.headers["ratelimit-remaining"] == response.headers["ratelimit-limit"]
    # Logged, but once, not once a request.
    warnings = [r for r in caplog.records if "rate limiter store unreachable" in r.getMessage()]
    assert len(warnings) == 1


@pytest.mark.parametrize("accept", ["application/json", GRAPHQL_RESPONSE_JSON])
async def test_redis_down_with_fail_closed_refuses_with_503(gateways: Gateways, accept: str):
    app = gateways.open(redis_url=CLOSED_PORT_URL, rate_limit_on_store_failure="closed")
    client = await gateways.client(app)

    with statements(app) as ran:
        query = await client.post("/graphql", json={"query": TARIFFS}, headers={"Accept": accept})
        mutated = await client.post(
            "/graphql", json={"query": mutation(1)}, headers={"Accept": accept}
        )

    for response in (query, mutated):
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == accept
        assert "data" not in response.json()
        assert codes(response) == ["SERVICE_UNAVAILABLE"]
    assert ran == []


# GraphQL limits over HTTP ----------------------------------------------------------------

# Each just above what TARIFFS needs (depth 2, 6 tokens, cost 21), so the limits are the
# settings, not the defaults.
SMALL_LIMITS = {
    "graphql_max_depth": 2,
    "graphql_max_aliases": 2,
    "graphql_max_directives": 1,
    "graphql_max_tokens": 40,
    "graphql_max_cost": 30,
    "graphql_max_batch": 2,
    "max_body_bytes": 1000,
}


@pytest_asyncio.fixture(scope="module")
async def limited(sqlite_demo_url: str, signing_key: bytes) -> AsyncIterator[Gateways]:
    """Opens one app with small limits, shared by the tests that only read."""
    opened = Gateways(sqlite_demo_url, signing_key)
    async with opened.stack:
        opened.open(**SMALL_LIMITS)
        yield opened


async def limited_client(limited: Gateways) -> tuple[Starlette, httpx.AsyncClient]:
    """The small-limits app, and a client of it from an address of its own."""
    [app] = limited.apps
    return app, await limited.client(app)


async def test_an_operation_within_the_small_limits_runs(limited: Gateways):
    app, client = await limited_client(limited)
    with statements(app) as ran:
        response = await post(client, TARIFFS)
    assert response.status_code == 200
    assert len(response.json()["data"]["tariffs"]) > 0
    assert ran, "the resolver reads the database"


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("{ tariffs { monthlyPrice { amount } } }", "QUERY_TOO_DEEP"),
        ("{ tariffs { a: id b: id c: id } }", "TOO_MANY_ALIASES"),
        ("{ tariffs { id @include(if: true) name @skip(if: false) } }", "TOO_MANY_DIRECTIVES"),
        ("{ tariffs { " + "id " * 40 + "} }", "TOO_MANY_TOKENS"),
        ("{ tariffs { id name code } }", "QUERY_TOO_COSTLY"),  # 1 + 10 x 3
    ],
    ids=["depth", "aliases", "directives", "tokens", "cost"],
)
@pytest.mark.parametrize(("accept", "status"), [(GRAPHQL_RESPONSE_JSON, 400), ("*/*", 200)])
async def test_operations_over_a_limit_are_refused_before_any_resolver(
    limited: Gateways, query: str, code: str, accept: str, status: int
):
    app, client = await limited_client(limited)
    with statements(app) as ran:
        response = await client.post("/graphql", json={"query": query}, headers={"Accept": accept})

    assert response.status_code == status, response.text
    assert "data" not in response.json()
    assert codes(response) == [code]
    assert ran == []
    assert "ratelimit-limit" not in response.headers, "a refused operation spends no budget"


async def test_cost_refusal_names_the_cost_and_the_limit(limited: Gateways):
    _, client = await limited_client(limited)
    [error] = (await post(client, "{ tariffs { id name code } }")).json()["errors"]
    assert error["extensions"] == {"code": "QUERY_TOO_COSTLY", "cost": 31, "maxCost": 30}


async def test_batches_over_the_limit_are_refused_whole(limited: Gateways):
    app, client = await limited_client(limited)
    with statements(app) as ran:
        response = await client.post("/graphql", json=[{"query": TARIFFS}] * 3)
    assert response.status_code == 400
    assert codes(response) == ["BAD_REQUEST"]
    assert "1 to 2 operations" in response.json()["errors"][0]["message"]
    assert ran == []
    within = await client.post("/graphql", json=[{"query": TARIFFS}] * 2)
    assert within.status_code == 200
    assert [len(result["data"]["tariffs"]) > 0 for result in within.json()] == [True, True]


def padded(size: int) -> bytes:
    """A valid GraphQL request of `size` bytes."""
    body = json.dumps({"query": TARIFFS}).encode()
    return body[:-1] + b" " * (size - len(body)) + b"}"


@pytest.mark.parametrize(
    ("body", "declared"),
    [
        (padded(1001), None),  # the real length
        (padded(5000), "900"),  # lies small: counted as it streams in
        (padded(900), "100000"),  # declares too much: refused before reading
    ],
    ids=["large", "lying-small", "declared-large"],
)
async def test_bodies_over_max_body_bytes_are_413(
    limited: Gateways, body: bytes, declared: str | None
):
    app, client = await limited_client(limited)
    headers = {"Content-Type": "application/json"}
    if declared is not None:
        headers["Content-Length"] = declared
    with statements(app) as ran:
        response = await client.post("/graphql", content=body, headers=headers)
    assert response.status_code == 413
    assert codes(response) == ["PAYLOAD_TOO_LARGE"]
    assert ran == []


async def test_a_body_of_exactly_max_body_bytes_is_read(limited: Gateways):
    _, client = await limited_client(limited)
    response = await client.post(
        "/graphql", content=padded(1000), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text


async def test_chunked_bodies_over_max_body_bytes_are_413(limited: Gateways):
    _, client = await limited_client(limited)

    async def chunks() -> AsyncIterator[bytes]:
        yield json.dumps({"query": TARIFFS})[:-1].encode()
        for _ in range(10):
            yield b" " * 200
        yield b"}"

    response = await client.post(
        "/graphql", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert codes(response) == ["PAYLOAD_TOO_LARGE"]


@pytest.mark.parametrize(
    "arguments", ["first: 101", "last: 101", "first: -1"], ids=["first", "last", "negative"]
)
async def test_page_sizes_over_100_are_bad_user_input_before_reading(
    gateways: Gateways, arguments: str
):
    app = gateways.open()
    client = await gateways.client(app)
    operator = await sign_in(client, "operator@example.com")
    alice = await sign_in(client, "alice@example.com")

    with statements(app) as ran:
        staff = await post(
            client, f"{{ customers({arguments}) {{ edges {{ node {{ id }} }} }} }}", operator
        )
    assert codes(staff) == ["BAD_USER_INPUT"]
    assert "data" not in staff.json()
    assert ran == []

    with statements(app) as ran:
        own = await post(
            client, f"{{ invoices({arguments}) {{ edges {{ node {{ id }} }} }} }}", alice
        )
    assert codes(own) == ["BAD_USER_INPUT"]
    assert "between 0 and 100" in own.json()["errors"][0]["message"]
    assert ran == [], "refused by the cost analysis, before any resolver"


REST_POSTS = ["/auth/login", "/auth/refresh", "/auth/logout", "/billing/pay"]


@pytest_asyncio.fixture(scope="module")
async def limited_token(limited: Gateways) -> str:
    """One sign-in for the module's signed-in routes (the account's attempts are few)."""
    _, client = await limited_client(limited)
    return await login(client, "alice@example.com")


@pytest.mark.parametrize("path", [*REST_POSTS, "/webhooks/payments/sandbox"])
@pytest.mark.parametrize("how", ["declared", "lying-small", "chunked"])
async def test_rest_and_webhook_bodies_over_max_body_bytes_are_413(
    limited: Gateways, limited_token: str, path: str, how: str
):
    """Every route that reads a body counts it as it streams in (issue 12, point 8); signed-in
    routes after the token (an anonymous caller is refused first, 401, having sent less)."""
    app, client = await limited_client(limited)
    body = b'{"email": "' + b"a" * 5000 + b'"}'
    headers = {"Content-Type": "application/json", "Idempotency-Key": "k1"}
    if path in ("/auth/logout", "/billing/pay"):
        headers["Authorization"] = f"Bearer {limited_token}"
    content: bytes | AsyncIterator[bytes] = body
    if how == "declared":
        headers["Content-Length"] = str(len(body))
    elif how == "lying-small":
        headers["Content-Length"] = "900"
    else:

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 250):
                yield body[start : start + 250]

        content = chunks()
    with statements(app) as ran:
        response = await client.post(path, content=content, headers=headers)
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert ran == []
