"""The staff list of users: filtered by role, access and email prefix, keyset-paginated,
on SQLite and PostgreSQL (the demo data)."""

import httpx
import pytest

from tests.conftest import graphql, login

USERS = (
    "query($role: [Role!], $active: Boolean, $prefix: String, $first: Int, $after: String) {"
    " users(role: $role, isActive: $active, emailPrefix: $prefix, first: $first, after: $after)"
    " { edges { node { id email role isActive } } pageInfo { hasNextPage endCursor } } }"
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def client(request: pytest.FixtureRequest) -> httpx.AsyncClient:
    return request.getfixturevalue(
        "sqlite_demo_client" if request.param == "sqlite" else "pg_client"
    )


async def _nodes(client: httpx.AsyncClient, token: str, **variables: object) -> list[dict]:
    body = await graphql(client, USERS, variables, token)
    assert "errors" not in body, body
    return [edge["node"] for edge in body["data"]["users"]["edges"]]  # type: ignore[index]


async def test_filters_and_pages(client: httpx.AsyncClient) -> None:
    operator = await login(client, "operator@example.com")
    staff = await _nodes(client, operator, role=["OPERATOR", "ADMIN"], first=100)
    assert staff
    assert {user["role"] for user in staff} <= {"OPERATOR", "ADMIN"}
    assert "admin@example.com" in {user["email"] for user in staff}
    assert [u["email"] for u in await _nodes(client, operator, prefix=" ALICE@", first=5)] == [
        "alice@example.com"
    ]
    assert await _nodes(client, operator, prefix="100%", first=5) == []  # % is no wildcard
    assert all(u["isActive"] for u in await _nodes(client, operator, active=True, first=50))

    seen: list[str] = []
    after = None
    while True:
        body = await graphql(client, USERS, {"first": 2, "after": after}, operator)
        page = body["data"]["users"]  # type: ignore[index]
        seen += [edge["node"]["id"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    everyone = await _nodes(client, operator, first=100)
    assert seen == [user["id"] for user in everyone]
    assert len(set(seen)) == len(seen)


async def test_customers_may_not_list_users(client: httpx.AsyncClient) -> None:
    alice = await login(client, "alice@example.com")
    body = await graphql(client, USERS, {"first": 2}, alice)
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]  # type: ignore[union-attr]
