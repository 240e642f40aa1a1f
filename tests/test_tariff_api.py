"""Tariff changes and pauses over GraphQL: the payloads, the codes in `extensions`, nothing
written by a refusal (the demo's Alice, on an app with a manual clock)."""

from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest_asyncio

from domains.clock import ManualClock
from gateway.app import create_app
from tests.conftest import app_client, graphql, login, make_settings
from tests.test_invoice_run import MOSCOW
from tests.test_role_matrix import _snapshot

SUBSCRIPTION = """{ me { customer { subscriptions {
  id status tariff { id monthlyPrice { amount } } tariffHistory { firstDay scheduled tariff { id } }
} } } }"""
AVAILABLE = "query($s: ID!) { availableTariffs(subscriptionId: $s) { id monthlyPrice { amount } } }"
CHANGE = """mutation($s: ID!, $t: ID!, $w: TariffChangeWhen!) {
  changeTariff(subscriptionId: $s, tariffId: $t, when: $w) {
    effectiveFrom scheduled tariff { id } subscription { tariff { id } }
  }
}"""
PAUSE = """mutation($s: ID!, $from: Date!, $until: Date!) {
  pauseSubscription(subscriptionId: $s, from: $from, until: $until) {
    subscription { status } pause { firstDay until resumedOn }
  }
}"""

CLOCK = ManualClock()


@pytest_asyncio.fixture
async def client(sqlite_demo_copy: str, signing_key: bytes) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(sqlite_demo_copy, signing_key, session_check_cache_seconds=0)
    async for http in app_client(create_app(settings, clock=CLOCK)):
        yield http


async def _subscription(client: httpx.AsyncClient, token: str) -> dict:
    body = await graphql(client, SUBSCRIPTION, token=token)
    return body["data"]["me"]["customer"]["subscriptions"][0]


async def _codes(body: dict) -> list[str]:
    return [error["extensions"]["code"] for error in body["errors"]]


async def test_an_upgrade_now_and_a_downgrade_refused_now(client: httpx.AsyncClient) -> None:
    alice = await login(client, "alice@example.com")
    subscription = await _subscription(client, alice)
    price = Decimal(subscription["tariff"]["monthlyPrice"]["amount"])
    body = await graphql(client, AVAILABLE, {"s": subscription["id"]}, alice)
    offered = body["data"]["availableTariffs"]
    assert subscription["tariff"]["id"] not in [t["id"] for t in offered]
    pricier = [t for t in offered if Decimal(t["monthlyPrice"]["amount"]) > price]
    cheaper = [t for t in offered if Decimal(t["monthlyPrice"]["amount"]) <= price]
    today = CLOCK.now().astimezone(MOSCOW).date()

    if cheaper:
        before = await _snapshot(client)
        variables = {"s": subscription["id"], "t": cheaper[0]["id"], "w": "NOW"}
        body = await graphql(client, CHANGE, variables, alice)
        assert await _codes(body) == ["TARIFF_DOWNGRADE_AT_PERIOD_END"]
        assert await _snapshot(client) == before
    operator = await login(client, "operator@example.com")
    target = (pricier or cheaper)[0]["id"]
    when = "NOW" if pricier else "PERIOD_END"
    variables = {"s": subscription["id"], "t": target, "w": when}
    body = await graphql(client, CHANGE, variables, operator)
    assert await _codes(body) == ["FORBIDDEN"]

    body = await graphql(client, CHANGE, variables, alice)
    change = body["data"]["changeTariff"]
    assert change["tariff"]["id"] == target
    assert change["scheduled"] is (when == "PERIOD_END")
    if pricier:
        assert change["effectiveFrom"] == today.isoformat()
        assert change["subscription"]["tariff"]["id"] == target
    history = (await _subscription(client, alice))["tariffHistory"]
    assert [span["tariff"]["id"] for span in history] == [subscription["tariff"]["id"], target]
    assert history[-1]["firstDay"] == change["effectiveFrom"]


async def test_a_pause_over_the_api_and_its_refusals(client: httpx.AsyncClient) -> None:
    alice = await login(client, "alice@example.com")
    subscription = await _subscription(client, alice)
    today = CLOCK.now().astimezone(MOSCOW).date()
    first = today + timedelta(days=3)

    for until, code in ((first + timedelta(days=6), "PAUSE_TOO_SHORT"), (first, "BAD_USER_INPUT")):
        before = await _snapshot(client)
        variables = {"s": subscription["id"], "from": first.isoformat(), "until": until.isoformat()}
        body = await graphql(client, PAUSE, variables, alice)
        assert await _codes(body) == [code]
        assert await _snapshot(client) == before

    operator = await login(client, "operator@example.com")
    until = first + timedelta(days=14)
    variables = {"s": subscription["id"], "from": first.isoformat(), "until": until.isoformat()}
    body = await graphql(client, PAUSE, variables, operator)
    assert body["data"]["pauseSubscription"] == {
        "subscription": {"status": subscription["status"]},
        "pause": {"firstDay": first.isoformat(), "until": until.isoformat(), "resumedOn": None},
    }
    body = await graphql(client, PAUSE, variables, alice)
    assert await _codes(body) == ["PAUSE_OVERLAPS"]
