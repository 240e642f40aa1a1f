"""A customer reaches only their own objects, by every path; staff read everyone's."""

import httpx
import pytest

from tests.conftest import graphql, login

pytestmark = pytest.mark.postgres

OWN_OBJECTS = """
{ me { customer { id
    contracts { id }
    subscriptions { id }
    invoices(first: 5) { edges { node { id payments { id transactions { id } } } } }
} } }
"""


async def _ids(client: httpx.AsyncClient, token: str) -> dict[str, str]:
    """One id of each kind the viewer owns."""
    body = await graphql(client, OWN_OBJECTS, token=token)
    customer = body["data"]["me"]["customer"]
    invoices = [edge["node"] for edge in customer["invoices"]["edges"]]
    paid = next(invoice for invoice in invoices if invoice["payments"])
    payment = paid["payments"][0]
    return {
        "Customer": customer["id"],
        "Contract": customer["contracts"][0]["id"],
        "Subscription": customer["subscriptions"][0]["id"],
        "Invoice": paid["id"],
        "Payment": payment["id"],
        "Transaction": payment["transactions"][0]["id"],
    }


def _codes(body: dict[str, object]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", [])]  # type: ignore[union-attr,index]


async def test_customer_cannot_reach_another_customers_objects(pg_client: httpx.AsyncClient):
    alice = await login(pg_client, "alice@example.com")
    bob = await login(pg_client, "bob@example.com")
    bobs = await _ids(pg_client, bob)

    for type_name, global_id in bobs.items():
        body = await graphql(
            pg_client, "query($id: ID!) { node(id: $id) { id } }", {"id": global_id}, alice
        )
        assert body["data"] == {"node": None}, type_name
        assert _codes(body) == ["NOT_FOUND"], type_name

    body = await graphql(
        pg_client, "query($id: ID!) { invoice(id: $id) { id } }", {"id": bobs["Invoice"]}, alice
    )
    assert body["data"] is None
    assert _codes(body) == ["NOT_FOUND"]
    # customer(id:) is a staff field: refused for the role before any lookup.
    body = await graphql(
        pg_client, "query($id: ID!) { customer(id: $id) { id } }", {"id": bobs["Customer"]}, alice
    )
    assert body.get("data") is None
    assert _codes(body) == ["FORBIDDEN"]


async def test_nested_paths_do_not_lead_out_of_the_viewers_account(pg_client: httpx.AsyncClient):
    alice = await login(pg_client, "alice@example.com")
    mine = await _ids(pg_client, alice)
    body = await graphql(
        pg_client,
        """query($id: ID!) { invoice(id: $id) { customer { id user { email } } } }""",
        {"id": mine["Invoice"]},
        alice,
    )
    assert body["data"]["invoice"]["customer"]["id"] == mine["Customer"]
    assert body["data"]["invoice"]["customer"]["user"]["email"] == "alice@example.com"


async def test_federation_entities_obey_the_same_rules(pg_client: httpx.AsyncClient):
    """A router's `_entities` call is one more path to an object."""
    alice = await login(pg_client, "alice@example.com")
    bob = await login(pg_client, "bob@example.com")
    bobs = await _ids(pg_client, bob)
    mine = await _ids(pg_client, alice)
    query = """query($reps: [_Any!]!) { _entities(representations: $reps) {
        ... on Invoice { id number } } }"""
    response = await pg_client.post(
        "/subgraphs/billing/graphql",
        json={
            "query": query,
            "variables": {
                "reps": [
                    {"__typename": "Invoice", "id": mine["Invoice"]},
                    {"__typename": "Invoice", "id": bobs["Invoice"]},
                ]
            },
        },
        headers={"Authorization": f"Bearer {alice}"},
    )
    body = response.json()
    assert body["data"]["_entities"][0]["id"] == mine["Invoice"]
    assert body["data"]["_entities"][1] is None
    assert _codes(body) == ["NOT_FOUND"]


async def test_staff_read_any_customer(pg_client: httpx.AsyncClient):
    bob = await login(pg_client, "bob@example.com")
    bobs = await _ids(pg_client, bob)
    operator = await login(pg_client, "operator@example.com")
    for type_name, global_id in bobs.items():
        body = await graphql(
            pg_client, "query($id: ID!) { node(id: $id) { id } }", {"id": global_id}, operator
        )
        assert body["data"] == {"node": {"id": global_id}}, type_name
    body = await graphql(
        pg_client,
        '{ customers(search: "bob@example.com") { edges { node { id user { email } } } } }',
        token=operator,
    )
    edges = body["data"]["customers"]["edges"]
    assert [edge["node"]["id"] for edge in edges] == [bobs["Customer"]]


async def test_customers_cannot_list_customers(pg_client: httpx.AsyncClient):
    alice = await login(pg_client, "alice@example.com")
    body = await graphql(pg_client, "{ customers { edges { node { id } } } }", token=alice)
    assert "data" not in body, "refused before execution"
    assert _codes(body) == ["FORBIDDEN"]


async def test_anonymous_gets_unauthenticated(pg_client: httpx.AsyncClient):
    body = await graphql(pg_client, "{ me { id } }")
    assert "data" not in body, "refused before execution"
    assert _codes(body) == ["UNAUTHENTICATED"]
    body = await graphql(pg_client, "{ tariffs { name monthlyPrice { amount currency } } }")
    assert len(body["data"]["tariffs"]) >= 3


async def test_ids_of_the_wrong_type_or_garbage(pg_client: httpx.AsyncClient):
    alice = await login(pg_client, "alice@example.com")
    mine = await _ids(pg_client, alice)
    body = await graphql(
        pg_client, "query($id: ID!) { invoice(id: $id) { id } }", {"id": mine["Payment"]}, alice
    )
    assert _codes(body) == ["NOT_FOUND"]
    body = await graphql(
        pg_client, "query($id: ID!) { invoice(id: $id) { id } }", {"id": "%%%not-an-id"}, alice
    )
    assert _codes(body) == ["BAD_USER_INPUT"]
