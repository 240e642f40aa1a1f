"""Text with a NUL character is refused at the edge with BAD_USER_INPUT, never a 500.

Found by the fuzzers (tests/test_fuzz_rest.py, tests/test_fuzz_graphql.py): an email with
U+0000 reached PostgreSQL, which cannot hold it in text (CharacterNotInRepertoireError).
"""

import httpx
import pytest

from tests.conftest import DEMO_PASSWORD, login

pytestmark = pytest.mark.postgres


async def test_rest_bodies_and_queries_refuse_nul(pg_client: httpx.AsyncClient):
    response = await pg_client.post(
        "/auth/login", json={"email": "alice@example.com\u0000", "password": DEMO_PASSWORD}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "BAD_USER_INPUT"
    assert "'email'" in response.json()["error"]["message"]
    token = await login(pg_client, "alice@example.com")
    response = await pg_client.get(
        "/billing/invoices",
        params={"after": "\u0000"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize(
    "body",
    [
        {
            "query": 'mutation($e: String!) { login(email: $e, password: "x") { accessToken } }',
            "variables": {"e": "a\u0000@example.com"},
        },
        {"query": 'mutation { login(email: "a\\u0000b", password: "x") { accessToken } }'},
    ],
)
async def test_graphql_literals_and_variables_refuse_nul(pg_client: httpx.AsyncClient, body):
    response = await pg_client.post("/graphql", json=body)
    assert response.status_code == 200, response.text
    errors = response.json()["errors"]
    assert [error["extensions"]["code"] for error in errors] == ["BAD_USER_INPUT"], errors
