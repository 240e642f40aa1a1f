"""Planned execution answers as graphql-core does, byte for byte, and the hot queries take it.

The whole suite is the equivalence corpus: test settings run every query as
`Execution.CHECKED` (tests/conftest.py `make_settings`, tests/servers.py), which answers
from the plan, runs graphql-core too, and fails the test on any difference. Here, the cases
the plan must get exactly right or leave to graphql-core are sent to two servers on the same
database, one planned and one on graphql-core alone, and their HTTP answers compared.
"""

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

import schema.planned
from gateway.app import create_app
from schema.planned import CheckedExecutor, Execution
from tests.conftest import app_client, graphql, login, make_settings
from tests.test_statements import DASHBOARD, STAFF_CUSTOMERS

pytestmark = pytest.mark.postgres

INVOICE_FIELDS = """
fragment Bill on Invoice { id number status amount { ...Sum } dueDate }
fragment Sum on Money { amount currency }
"""
# (name, viewer, query, variables): each answered by both paths, compared as sent.
CORPUS: list[tuple[str, str | None, str, dict[str, object] | None]] = [
    ("dashboard", "alice", DASHBOARD, None),
    ("staff list", "operator", STAFF_CUSTOMERS, {"first": 7}),
    (
        "aliases, named and inline fragments, __typename",
        "alice",
        INVOICE_FIELDS
        + """
        query {
          viewer: me { __typename who: email ... on User { id } customer { ... on Customer {
            full: fullName balance { ...Sum } } } }
          latest: invoices(first: 2) { edges { node { ...Bill __typename } } }
          oldest: invoices(last: 2) { edges { cursor node { ...Bill } } pageInfo {
            hasPreviousPage startCursor } }
        }""",
        None,
    ),
    (
        "@skip and @include from variables, true",
        "alice",
        """query($deep: Boolean!, $quiet: Boolean!) { me { email @skip(if: $quiet) customer {
          contracts @include(if: $deep) { address tariff { name } } id } } }""",
        {"deep": True, "quiet": False},
    ),
    (
        "@skip and @include from variables, false",
        "alice",
        """query($deep: Boolean!, $quiet: Boolean!) { me { email @skip(if: $quiet) customer {
          contracts @include(if: $deep) { address tariff { name } } id } } }""",
        {"deep": False, "quiet": True},
    ),
    (
        "arguments from variables, enum lists and dates",
        "alice",
        """query($s: [InvoiceStatus!], $from: Date) { invoices(first: 20, status: $s,
          periodFrom: $from) { edges { node { number status periodStart } } } }""",
        {"s": ["PAID", "OVERDUE"], "from": "2000-01-01"},
    ),
    ("nulls where the schema allows them", "operator", "{ me { id customer { id } } }", None),
    (
        "the public catalogue, anonymous",
        None,
        "{ tariffs { code name segment monthlyPrice { amount } isActive } }",
        None,
    ),
    (
        "a resolver's error in a nested field (graphql-core words it)",
        "alice",
        '{ me { email } invoice(id: "SW52b2ljZTo5OTk5OTk") { number } }',
        None,
    ),
    ("bad input in an argument", "alice", "{ invoices(first: 1000) { edges { cursor } } }", None),
    (
        "a malformed cursor",
        "alice",
        '{ invoices(first: 2, after: "nonsense") { edges { cursor } } }',
        None,
    ),
    (
        "staff only field, asked by a customer",
        "alice",
        "{ tariffs(includeArchived: true) { code } }",
        None,
    ),
    ("introspection", "alice", "{ __schema { queryType { name } } __typename }", None),
    (
        "a variable missing",
        "alice",
        "query($n: Int!) { invoices(first: $n) { edges { cursor } } }",
        None,
    ),
]


@pytest_asyncio.fixture
async def servers(
    pg_demo_url: str, signing_key: bytes
) -> AsyncIterator[dict[Execution, httpx.AsyncClient]]:
    """Two apps on the same database: one planned, one on graphql-core alone."""
    clients: dict[Execution, httpx.AsyncClient] = {}
    runs = []
    for execution in (Execution.PLANNED, Execution.GRAPHQL_CORE):
        settings = make_settings(pg_demo_url, signing_key, graphql_execution=execution)
        run = app_client(create_app(settings))
        clients[execution] = await anext(run)
        runs.append(run)
    yield clients
    for run in runs:
        await run.aclose()


async def _answer(
    client: httpx.AsyncClient, viewer: str | None, query: str, variables: object
) -> tuple[int, str]:
    headers = {}
    if viewer is not None:
        headers["Authorization"] = f"Bearer {await login(client, f'{viewer}@example.com')}"
    payload = {"query": query, "variables": variables}
    response = await client.post("/graphql", json=payload, headers=headers)
    return response.status_code, response.text


@pytest.mark.parametrize(
    ("name", "viewer", "query", "variables"), CORPUS, ids=[c[0] for c in CORPUS]
)
async def test_both_paths_answer_alike(
    servers: dict[Execution, httpx.AsyncClient],
    name: str,
    viewer: str | None,
    query: str,
    variables: dict[str, object] | None,
):
    planned = await _answer(servers[Execution.PLANNED], viewer, query, variables)
    reference = await _answer(servers[Execution.GRAPHQL_CORE], viewer, query, variables)
    assert planned == reference, name


async def test_the_node_interface_answers_alike(servers: dict[Execution, httpx.AsyncClient]):
    """`node` returns an interface: graphql-core runs it, on an id known only at run time."""
    client = servers[Execution.GRAPHQL_CORE]
    token = await login(client, "alice@example.com")
    body = await graphql(client, "{ invoices(first: 1) { edges { node { id } } } }", token=token)
    invoice_id = body["data"]["invoices"]["edges"][0]["node"]["id"]
    query = "query($id: ID!) { node(id: $id) { __typename id ... on Invoice { number } } }"
    variables = {"id": invoice_id}
    planned = await _answer(servers[Execution.PLANNED], "alice", query, variables)
    assert planned == await _answer(client, "alice", query, variables)
    assert '"number"' in planned[1]


async def test_the_hot_queries_take_the_plan(pg_client: httpx.AsyncClient):
    """A checked server counts the answers it took from a plan and compared: the portal's
    first screen and the staff list are among them (neither falls back to graphql-core)."""
    for viewer, query in (("alice", DASHBOARD), ("operator", STAFF_CUSTOMERS)):
        token = await login(pg_client, f"{viewer}@example.com")
        compared = CheckedExecutor.compared
        body = await graphql(pg_client, query, token=token)
        assert "errors" not in body
        assert CheckedExecutor.compared == compared + 1, viewer


async def test_a_difference_is_caught(
    pg_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
):
    """A plan that answers wrong (here: every leaf says "planned") fails a checked run."""

    def wrong(shape: schema.planned._Shape, *_: object) -> tuple[str, str] | None:
        return ("True", "'planned'") if shape.leaf is not None else None

    monkeypatch.setattr(schema.planned, "_fast_leaf", wrong)
    token = await login(pg_client, "alice@example.com")
    seen = len(CheckedExecutor.mismatches)
    query = "{ me { email } }  # a text no other test sends, so it is planned afresh"
    body = await graphql(pg_client, query, token=token)
    found = CheckedExecutor.mismatches[seen:]
    del CheckedExecutor.mismatches[seen:]  # this test's own, expected
    assert len(found) == 1
    assert '"planned"' in found[0]
    assert "data" not in body
    assert body["errors"][0]["message"].startswith("planned:")


async def test_a_plan_that_breaks_is_caught(
    pg_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
):
    """A plan that fails where graphql-core answers (a bug of the plan's own, which the
    fallback would hide) fails a checked run too."""

    def broken(*_args: object) -> None:
        raise TypeError("the plan's own bug")

    monkeypatch.setattr(schema.planned, "_complete", broken)
    token = await login(pg_client, "alice@example.com")
    seen = len(CheckedExecutor.mismatches)
    body = await graphql(pg_client, "{ me { id }  # planned afresh\n}", token=token)
    found = CheckedExecutor.mismatches[seen:]
    del CheckedExecutor.mismatches[seen:]
    assert len(found) == 1
    assert "the plan's own bug" in found[0]
    assert body["errors"][0]["message"].startswith("the plan failed")
