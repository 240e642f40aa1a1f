"""The bench's three servers answer its two scenarios alike: Kabinet, bench/ceiling.py (raw
asyncpg) and the Node peer (bench/peer/server.mjs), started as bench/dashboard.py starts them,
on the demo data. Their figures compare only if their JSON is the same."""

import json
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bench import dashboard
from domains.clock import SYSTEM_CLOCK
from domains.identity.models import Role
from domains.identity.tokens import TokenService, generate_signing_key

pytestmark = pytest.mark.postgres

VIEWERS = {"dashboard": "bob@example.com", "staff": dashboard.STAFF_VIEWER}


@pytest.fixture(scope="module")
def servers(pg_demo_url: str, signing_key: bytes) -> Iterator[list[dashboard.Server]]:
    with ExitStack() as stack:
        yield [
            dashboard.start(stack, name, argv, pg_demo_url, signing_key, 3600)
            for name, argv in dashboard.server_commands().items()
        ]


def _answer(server: dashboard.Server, scenario: dashboard.Scenario, token: str) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    status, raw = dashboard.http("POST", server.url, scenario.body, headers)
    return status, json.loads(raw)


@pytest.mark.parametrize("scenario", dashboard.SCENARIOS, ids=lambda s: s.name)
def test_the_three_servers_answer_the_same_json(
    servers: list[dashboard.Server], scenario: dashboard.Scenario
):
    kabinet, *others = servers
    token = dashboard.sign_in(kabinet.base, VIEWERS[scenario.name])
    status, expected = _answer(kabinet, scenario, token)
    assert status == 200, expected
    assert "errors" not in expected, expected
    assert expected["data"]
    for server in others:
        status, found = _answer(server, scenario, token)
        assert status == 200, (server.name, found)
        assert dashboard.first_difference(expected, found) is None, server.name
        assert found == expected, server.name


def _token(signing_key: bytes, audience: str = "kabinet-api") -> str:
    """An access token of the demo admin (user 1), signed with `signing_key` for `audience`."""
    tokens = TokenService(
        signing_key,
        issuer="kabinet",
        audience=audience,
        access_ttl=timedelta(minutes=5),
        clock=SYSTEM_CLOCK,
    )
    token, _ = tokens.issue_access_token(
        user_id=1,
        role=Role.ADMIN,
        customer_id=None,
        session_id=uuid.uuid4(),
        not_after=datetime.now(UTC) + timedelta(hours=1),
    )
    return token


def test_none_of_them_takes_a_token_the_gateway_refuses(
    servers: list[dashboard.Server], signing_key: bytes
):
    refused = {
        "garbage": "not-a-token",
        "another key": _token(generate_signing_key()),
        "another audience": _token(signing_key, audience="elsewhere"),
    }
    for scenario in dashboard.SCENARIOS:
        for server in servers:
            for why, token in refused.items():
                status, body = _answer(server, scenario, token)
                assert status == 401, (server.name, why, body)
                assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_the_staff_list_is_refused_to_a_customer(servers: list[dashboard.Server]):
    staff = next(s for s in dashboard.SCENARIOS if s.name == "staff")
    token = dashboard.sign_in(servers[0].base, VIEWERS["dashboard"])
    answers = {server.name: _answer(server, staff, token) for server in servers}
    for name, (_status, body) in answers.items():
        assert body.get("data") is None, name
        assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"], (name, body)
