"""A real federation router routes over the subgraphs, each in its own process, and answers
what `/graphql` answers.

Each subgraph runs as `kabinet serve --subgraph NAME` on its own port, in production, so
it answers only a router that sends its secret; Apollo Gateway (tests/federation/router.mjs)
composes them from their SDL and routes the operations, fetching fields across subgraphs
through `_entities`. The same operations, for the same
viewer, go to `/graphql` of a whole app on the same database; the JSON must be equal.
"""

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
import websockets
from graphql import parse
from sqlalchemy import select

from domains.clock import utcnow
from domains.customers.models import Customer
from domains.database import Database
from domains.identity.models import Role, User
from domains.identity.viewer import Viewer
from domains.support.models import TicketCategory, TicketChannel
from domains.support.ticket_create import create_ticket
from domains.support.ticket_message import add_internal_note, add_ticket_message
from gateway.app import create_app
from schema.federation import SUBGRAPHS, build_subgraph
from schema.guards.cost import operation_cost
from tests.conftest import (
    TEST_REDIS_URL,
    app_client,
    load_demo_into,
    login,
    make_settings,
    migrated_database,
    statements,
)
from tests.node import run_node
from tests.servers import REPO_ROOT, ServerProcess

pytestmark = pytest.mark.postgres

ROUTER = REPO_ROOT / "tests" / "federation" / "router.mjs"
DASHBOARD = (REPO_ROOT / "bench" / "dashboard.graphql").read_text()
CUSTOMER = "bob@example.com"  # every invoice paid: payments and ledger entries to follow
STAFF = "operator@example.com"
# No relay or consumers beside the queries: the analytics counters they read stay as they are.
NO_WORKER = {"worker_in_process": "false"}
ROUTER_SECRET = "router-secret-for-the-tests"
# Production processes share their sessions through Redis, as deployed.
PRODUCTION_SUBGRAPH = {
    "env": "production",
    "router_secret": ROUTER_SECRET,
    "redis_url": TEST_REDIS_URL,
    **NO_WORKER,
}

ACCOUNT = """
query Account {
  me {
    id email role
    customer {
      id contractNum fullName
      balance { amount currency }
      user { id email }
      contracts {
        id address status
        tariff { id code monthlyPrice { amount currency } }
        customer { id contractNum }
      }
      subscriptions { id status tariff { id name } contract { id address } }
      invoices(first: 3) {
        pageInfo { hasNextPage endCursor }
        edges { cursor node {
          id number status
          amount { amount currency }
          amountDue { amount currency }
          customer { id fullName }
          payments {
            id method status
            amount { amount currency }
            invoice { id number }
            transactions { id account type amount { amount currency } payment { id } }
          }
        } }
      }
      payments(first: 3) {
        edges { node { id status invoice { id customer { contractNum } } transactions { id } } }
      }
      tickets(first: 2) {
        edges { node {
          id subject status priority
          customer { contractNum balance { amount } }
          contract { address }
          messages { authorKind body internal }
        } }
      }
    }
  }
  invoices(first: 2) { edges { node { id number customer { contractNum user { email } } } } }
  balanceHistory(first: 3) {
    edges { node { id balanceAfter { amount } payment { id invoice { number } } } }
  }
  tariffs { id code }
}
"""

# What `node(id:)` asks of each Node type: its own fields and fields from other subgraphs.
NODE_FIELDS = {
    "User": "email role customer { contractNum }",
    "Customer": "contractNum balance { amount } user { email } "
    "invoices(first: 1) { edges { node { number } } }",
    "Contract": "address status tariff { code } customer { fullName balance { amount } }",
    "ServiceSubscription": "status tariff { name } contract { address customer { contractNum } }",
    "Tariff": "code monthlyPrice { amount currency }",
    "Invoice": "number amount { amount } customer { contractNum } payments { id status }",
    "Payment": "status amount { amount } invoice { number customer { fullName } } "
    "transactions { id }",
    "Transaction": "account type amount { amount } payment { status invoice { number } }",
    "Ticket": "subject status customer { contractNum balance { amount } } "
    "messages { authorKind body internal }",
}

STAFF_DESK = """
query Desk($customer: ID!, $from: Date!, $to: Date!) {
  customer(id: $customer) {
    id contractNum fullName
    user { id email role }
    balance { amount currency }
    contracts { id tariff { code } }
    subscriptions { id status }
    invoices(first: 2) { edges { node { id number status payments { id method } } } }
    payments(first: 2) { edges { node { id amount { amount } } } }
    tickets(first: 2) { edges { node {
      id subject assignee { email } messages { authorKind body internal }
    } } }
  }
  ledger(customerId: $customer, first: 5) {
    edges { node {
      id account type amount { amount currency }
      payment { id invoice { number customer { contractNum } } }
    } }
  }
  customers(first: 3) {
    edges { node {
      id contractNum user { email }
      invoices(first: 1) { edges { node { number amount { amount } } } }
    } }
  }
  paymentStatistics(from: $from, to: $to) { from to totals { payments amount { amount currency } } }
}
"""

# Every object of these queries names its type: ids of each type, for `node` and `_entities`.
OWN_IDS = """
query OwnIds {
  me { __typename id customer {
    __typename id
    contracts { __typename id tariff { __typename id } }
    subscriptions { __typename id }
    invoices(first: 3) { edges { node {
      __typename id payments { __typename id transactions { __typename id } }
    } } }
    tickets(first: 3) { edges { node { __typename id } } }
  } }
}
"""
STAFF_IDS = """
query StaffIds {
  customers(first: 5) { edges { node {
    __typename id
    user { __typename id }
    contracts { __typename id tariff { __typename id } }
    subscriptions { __typename id }
    invoices(first: 3) { edges { node {
      __typename id payments { __typename id transactions { __typename id } }
    } } }
    tickets(first: 3) { edges { node { __typename id } } }
  } } }
}
"""
# The Node types `node(id:)` returns (a BalanceEntry's id is its Transaction's).
NODE_TYPES = {
    "User",
    "Customer",
    "Contract",
    "ServiceSubscription",
    "Tariff",
    "Invoice",
    "Payment",
    "Transaction",
    "Ticket",
}


def _ids_by_type(data: Any, found: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """Each `__typename` in a result, with the ids of its objects, first seen first."""
    found = defaultdict(list) if found is None else found
    if isinstance(data, dict):
        if "__typename" in data and data["id"] not in found[data["__typename"]]:
            found[data["__typename"]].append(data["id"])
        for value in data.values():
            _ids_by_type(value, found)
    elif isinstance(data, list):
        for item in data:
            _ids_by_type(item, found)
    return found


# An operation as a viewer sends it: the document, the viewer's access token, variables.
Operation = tuple[str, str, dict[str, Any]]


def _route(subgraphs: dict[str, str], operations: list[Operation]) -> list[dict[str, Any]]:
    """The router's answer to each operation."""
    return run_node(
        ROUTER,
        *(f"{name}={url}" for name, url in subgraphs.items()),
        needs="@apollo/gateway",
        env={"KABINET_ROUTER_SECRET": ROUTER_SECRET},
        stdin=json.dumps(
            [
                {"query": query, "variables": variables, "authorization": f"Bearer {token}"}
                for query, token, variables in operations
            ]
        ),
    )


async def _post(
    client: httpx.AsyncClient,
    endpoint: str,
    query: str,
    token: str,
    variables: dict[str, Any] | None = None,
) -> dict[str, Any]:
    response = await client.post(
        endpoint,
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    return response.json()


async def _ids(client: httpx.AsyncClient, query: str, token: str) -> dict[str, list[str]]:
    answer = await _post(client, "/graphql", query, token)
    assert "errors" not in answer, answer["errors"]
    return _ids_by_type(answer["data"])


@pytest_asyncio.fixture(scope="module")
async def router_url() -> AsyncIterator[str]:
    """The demo on a database of its own, with tickets: one for each of the first customers
    (as they open them), and on the customer's a note and a reply by an operator."""
    async with migrated_database("kabinet_router") as url:
        await load_demo_into(url)
        db = Database(url)
        try:
            async with db.connect() as conn:
                owners = (
                    await conn.execute(
                        select(Customer.id, Customer.user_id).order_by(Customer.id).limit(5)
                    )
                ).all()
                staff = await conn.scalar(select(User.id).where(User.email == STAFF))
                bobs = await conn.scalar(
                    select(Customer.id)
                    .join(User, User.id == Customer.user_id)
                    .where(User.email == CUSTOMER)
                )
            operator = Viewer(staff, Role.OPERATOR)
            for customer_id, user_id in owners:
                created = await create_ticket(
                    db,
                    Viewer(user_id, Role.CUSTOMER, customer_id),
                    category=TicketCategory.SLOW_SPEED,
                    subject=f"Slow evenings ({customer_id})",
                    body="Speed drops after 8 pm.",
                    channel=TicketChannel.WEB,
                )
                if customer_id == bobs:
                    ticket_id = created.ticket.id
                    await add_internal_note(
                        db, operator, ticket_id=ticket_id, body="Congested node, see NOC-12."
                    )
                    await add_ticket_message(
                        db,
                        operator,
                        ticket_id=ticket_id,
                        body="We are upgrading your node this week.",
                        reopen_within=timedelta(days=14),
                    )
        finally:
            await db.dispose()
        yield url


@pytest_asyncio.fixture(scope="module")
async def subgraphs(
    router_url: str, signing_key: bytes, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, str]]:
    """Each subgraph's /graphql, served by its own production process; all started at once."""
    logs = tmp_path_factory.mktemp("subgraphs")
    servers = {
        name: ServerProcess(
            router_url,
            signing_key,
            logs / f"{name}.log",
            "--subgraph",
            name,
            **PRODUCTION_SUBGRAPH,
        )
        for name in SUBGRAPHS
    }
    try:
        await asyncio.gather(*(server.wait_until_ready() for server in servers.values()))
        yield {name: f"{server.base}/graphql" for name, server in servers.items()}
    finally:
        for server in servers.values():
            server.stop()


@pytest_asyncio.fixture(scope="module")
async def whole(router_url: str, signing_key: bytes) -> AsyncIterator[httpx.AsyncClient]:
    """The whole app on the same database: `/graphql` and every `/subgraphs/NAME/graphql`."""
    app = create_app(make_settings(router_url, signing_key, **NO_WORKER))
    async for client in app_client(app):
        yield client


@pytest_asyncio.fixture(scope="module")
async def tokens(whole: httpx.AsyncClient) -> dict[str, str]:
    return {email: await login(whole, email) for email in (CUSTOMER, STAFF)}


async def _nodes_query(whole: httpx.AsyncClient, token: str) -> tuple[str, dict[str, str]]:
    """`node(id:)` for one of the viewer's objects of each Node type, and those ids."""
    ids = {
        type_name: of_type[0] for type_name, of_type in (await _ids(whole, OWN_IDS, token)).items()
    }
    assert set(ids) == NODE_TYPES
    variables = ", ".join(f"${type_name}: ID!" for type_name in ids)
    nodes = "".join(
        f"  {name.lower()}: node(id: ${name}) {{ __typename id ... on {name} {{ {fields} }} }}\n"
        for name, fields in NODE_FIELDS.items()
    )
    return f"query Nodes({variables}) {{\n{nodes}}}", ids


async def test_router_answers_what_graphql_answers(
    subgraphs: dict[str, str], whole: httpx.AsyncClient, tokens: dict[str, str]
):
    customer, staff = tokens[CUSTOMER], tokens[STAFF]
    nodes, ids = await _nodes_query(whole, customer)
    today = utcnow().date()
    desk = {"customer": ids["Customer"], "from": str(today - timedelta(days=365)), "to": str(today)}
    operations: dict[str, Operation] = {
        "dashboard": (DASHBOARD, customer, {}),
        "account": (ACCOUNT, customer, {}),
        "nodes as the customer": (nodes, customer, ids),
        "nodes as staff": (nodes, staff, ids),
        "staff desk": (STAFF_DESK, staff, desk),
    }
    routed = dict(zip(operations, _route(subgraphs, list(operations.values())), strict=True))
    for name, (query, token, variables) in operations.items():
        served = await _post(whole, "/graphql", query, token, variables)
        assert "errors" not in served, (name, served["errors"])
        assert routed[name] == served, f"{name}: the router's answer differs from /graphql's"

    invoices = routed["account"]["data"]["me"]["customer"]["invoices"]["edges"]
    assert invoices[0]["node"]["payments"][0]["transactions"], "payments and ledger entries"
    assert {node["__typename"] for node in routed["nodes as staff"]["data"].values()} == NODE_TYPES
    assert routed["staff desk"]["data"]["ledger"]["edges"], "the staff desk shows ledger entries"
    # The support subgraph's part: the customer's thread without the note, staff's with it.
    # Newest first: the ticket opened above, after the demo's.
    bobs = routed["account"]["data"]["me"]["customer"]["tickets"]["edges"][0]
    assert [m["internal"] for m in bobs["node"]["messages"]] == [False, False]
    assert routed["nodes as the customer"]["data"]["ticket"]["messages"] == bobs["node"]["messages"]
    assert [m["internal"] for m in routed["nodes as staff"]["data"]["ticket"]["messages"]] == [
        False,
        True,
        False,
    ]


async def test_production_subgraphs_answer_the_router_only(
    subgraphs: dict[str, str], whole: httpx.AsyncClient, tokens: dict[str, str]
):
    """The attack: read the whole schema through `_service { sdl }` with introspection off,
    and an archived tariff through `_entities`. Without the router's secret, or with a wrong
    one, a production subgraph refuses both, HTTP and websocket alike; the router has it."""
    customers = subgraphs["customers"]
    tariff = (await _ids(whole, STAFF_IDS, tokens[STAFF]))["Tariff"][0]
    entities = {
        "query": "query($r: [_Any!]!) { _entities(representations: $r) { ...on Tariff { code } } }",
        "variables": {"r": [{"__typename": "Tariff", "id": tariff}]},
    }
    sdl = {"query": "{ _service { sdl } }"}
    async with httpx.AsyncClient() as client:
        for payload in (sdl, entities):
            for headers in ({}, {"Kabinet-Router-Secret": "guessed"}):
                refused = await client.post(customers, json=payload, headers=headers)
                assert refused.status_code == 403, refused.text
                assert refused.json()["errors"][0]["extensions"]["code"] == "ROUTER_ONLY"
                assert "data" not in refused.json()
        router = {"Kabinet-Router-Secret": ROUTER_SECRET}
        answered = await client.post(customers, json=sdl, headers=router)
        assert answered.status_code == 200
        assert "type Tariff" in answered.json()["data"]["_service"]["sdl"]
        answered = await client.post(customers, json=entities, headers=router)
        assert answered.json()["data"]["_entities"][0]["code"]
        # Health stays open to the orchestrator.
        assert (await client.get(customers.replace("/graphql", "/health/live"))).status_code == 200
    ws = websockets.connect(customers.replace("http", "ws"), subprotocols=["graphql-transport-ws"])
    with pytest.raises(websockets.InvalidStatus):
        async with ws:
            pass


ENTITY_TYPES = '{ __type(name: "_Entity") { possibleTypes { name } } }'
ENTITIES = """
query Entities($representations: [_Any!]!) {
  _entities(representations: $representations) { __typename ... on Node { id } }
}
"""


async def test_entities_cost_one_statement_per_type(
    whole: httpx.AsyncClient, tokens: dict[str, str]
):
    """A router asks a subgraph for many entities at once; the dataloaders load each type's
    rows in one statement, however many representations of it there are."""
    staff = tokens[STAFF]
    ids = await _ids(whole, STAFF_IDS, staff)
    assert set(ids) == NODE_TYPES
    assert all(len(of_type) > 1 for of_type in ids.values())
    checked = []
    for subgraph in SUBGRAPHS:
        endpoint = f"/subgraphs/{subgraph}/graphql"
        entity = (await _post(whole, endpoint, ENTITY_TYPES, staff))["data"]["__type"]
        if entity is None:
            continue  # it adds fields to no entity and resolves none
        types = [member["name"] for member in entity["possibleTypes"]]
        # A balance entry's global id is its Transaction's: no representation names it;
        # the demo data holds no billing run (only `kabinet billing run` writes one).
        assert set(types) - set(ids) <= {"BalanceEntry", "BillingRun"}, (subgraph, types)
        representations = [
            {"__typename": type_name, "id": id_}
            for type_name in types
            for id_ in ids.get(type_name, ())
        ]
        with statements(whole._transport.app) as ran:  # type: ignore[attr-defined]
            answer = await _post(
                whole, endpoint, ENTITIES, staff, {"representations": representations}
            )
        assert "errors" not in answer, (subgraph, answer["errors"])
        assert answer["data"]["_entities"] == representations
        loaded = {r["__typename"] for r in representations}
        assert len(ran) == len(loaded), f"{subgraph}: {sorted(loaded)}\n\n" + "\n\n".join(ran)
        checked.append(subgraph)
    assert set(checked) >= {"identity", "customers", "billing"}


BALANCES = """
query Balances($representations: [_Any!]!) {
  _entities(representations: $representations) { ... on Customer { balance { amount currency } } }
}
"""


@pytest.mark.parametrize("count", [1, 7])
def test_entities_cost_one_per_representation(count: int):
    """A router fetching one entity pays for one, not for a plain list's ten; many, each."""
    schema = build_subgraph("billing")._schema
    representations = [{"__typename": "Customer", "id": "Q3VzdG9tZXI6MQ"}] * count
    cost = operation_cost(schema, parse(BALANCES), None, {"representations": representations})
    assert cost == 1 + count * 3  # `_entities`, then each entity's balance and its two fields
