"""Live updates: events reach the subscribed viewer's sockets, and only theirs.

The events here go onto the app's own bus as the relay would put them (the relay has its own
tests); the sockets are real, on a uvicorn server in a thread.
"""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import websockets
from starlette.types import ASGIApp, Receive, Scope, Send
from websockets.asyncio.client import ClientConnection, connect

from domains.database import Database
from domains.demo import load_demo
from domains.events.cloudevent import CloudEvent
from gateway.app import create_app
from migrations import upgrade
from tests.conftest import make_settings
from tests.servers import free_socket, serve

BALANCE = "subscription($after: ID) { balanceChanged(after: $after) { eventId reason } }"


class _LoopOf:
    """The app, noting the event loop it runs on, so the test can publish on that loop."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.loop = asyncio.get_running_loop()
        await self.app(scope, receive, send)


@pytest_asyncio.fixture
async def demo_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'kabinet.db'}"
    upgrade(url)
    db = Database(url)
    try:
        await load_demo(db)
    finally:
        await db.dispose()
    return url


@pytest.fixture
def server(demo_url: str, signing_key: bytes) -> Iterator[tuple[str, Any, _LoopOf]]:
    app = create_app(make_settings(demo_url, signing_key, subscription_queue_size=4))
    wrapped = _LoopOf(app)
    with serve(wrapped, free_socket()) as base:
        yield base, app, wrapped


async def _token(base: str, email: str) -> str:
    async with httpx.AsyncClient(base_url=base) as client:
        response = await client.post(
            "/auth/login", json={"email": email, "password": "kabinet-demo"}
        )
        return response.json()["access_token"]


def _publish(server: tuple[str, Any, _LoopOf], customer_id: int, type: str, **data: Any) -> str:
    _base, app, wrapped = server
    event = CloudEvent(
        uuid.uuid4(),
        type,
        "urn:kabinet/test",
        f"customer:{customer_id}",
        datetime.now(UTC),
        {"version": 1, "customer_id": customer_id, **data},
    )
    bus = app.state.services.bus
    assert wrapped.loop is not None
    asyncio.run_coroutine_threadsafe(
        bus.publish("kabinet.billing", event.subject, event.to_json()), wrapped.loop
    ).result(10)
    return str(event.id)


def _balance(customer_id: int) -> dict[str, Any]:
    return {"balance": "1.00", "delta": "-1.00", "currency": "EUR", "reason": "payment"}


async def _subscribed(
    base: str, token: str, query: str, protocol: str = "graphql-transport-ws", **variables: Any
) -> AsyncIterator[ClientConnection]:
    async with connect(base.replace("http", "ws") + "/graphql", subprotocols=[protocol]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        start = "subscribe" if protocol == "graphql-transport-ws" else "start"
        payload = {"query": query, "variables": variables}
        await ws.send(json.dumps({"id": "1", "type": start, "payload": payload}))
        yield ws


async def _wait_subscribers(app: Any, count: int) -> None:
    """The hub holds `count` subscribers: a subscribe message is handled asynchronously."""
    deadline = asyncio.get_running_loop().time() + 10
    while app.state.metrics.registry.get_sample_value("kabinet_open_subscriptions") != count:
        assert asyncio.get_running_loop().time() < deadline, "subscribers never registered"
        await asyncio.sleep(0.01)


async def _close_code(ws: ClientConnection) -> tuple[int, int]:
    """Reads until the server closes the socket: (messages read, close code)."""
    read = 0
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 15)
            read += 1
    except websockets.ConnectionClosed as closed:
        return read, closed.rcvd.code if closed.rcvd is not None else 1006


async def _error_code(ws: ClientConnection) -> str:
    """The code of the error a subscription ended with (a resolver's error comes as `next`)."""
    message = json.loads(await asyncio.wait_for(ws.recv(), 10))
    errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
    return errors[0]["extensions"]["code"]


async def _next(ws: ClientConnection) -> dict[str, Any]:
    message = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert message["type"] in ("next", "data"), message
    return message["payload"]["data"]


async def test_a_customer_gets_their_own_events_only(server):
    base, app, _ = server
    alice, bob = await _token(base, "alice@example.com"), await _token(base, "bob@example.com")
    async for alice_ws in _subscribed(base, alice, BALANCE):
        async for bob_ws in _subscribed(base, bob, BALANCE):
            await _wait_subscribers(app, 2)
            alice_event = _publish(server, 1, "balance.changed", **_balance(1))
            assert (await _next(alice_ws))["balanceChanged"]["eventId"] == alice_event
            bob_event = _publish(server, 2, "balance.changed", **_balance(2))
            # Bob's first message is his own event: Alice's never reached him.
            assert (await _next(bob_ws))["balanceChanged"]["eventId"] == bob_event


async def test_legacy_graphql_ws_delivers(server):
    base, app, _ = server
    alice = await _token(base, "alice@example.com")
    async for ws in _subscribed(base, alice, BALANCE, protocol="graphql-ws"):
        await _wait_subscribers(app, 1)
        event_id = _publish(server, 1, "balance.changed", **_balance(1))
        assert (await _next(ws))["balanceChanged"]["eventId"] == event_id


async def test_sse_delivers(server):
    base, app, _ = server
    alice = await _token(base, "alice@example.com")
    headers = {"Authorization": f"Bearer {alice}", "Accept": "text/event-stream"}
    async with (
        httpx.AsyncClient(base_url=base, timeout=10) as client,
        client.stream("POST", "/graphql", json={"query": BALANCE}, headers=headers) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        await _wait_subscribers(app, 1)
        event_id = _publish(server, 1, "balance.changed", **_balance(1))
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                body = json.loads(line.removeprefix("data: "))
                assert body["data"]["balanceChanged"]["eventId"] == event_id
                break


@pytest.mark.parametrize("payload", [{}, {"token": "not-a-token"}, {"Authorization": "Basic x"}])
async def test_connection_init_without_a_valid_token_is_rejected(server, payload):
    base, _app, _ = server
    async with connect(
        base.replace("http", "ws") + "/graphql", subprotocols=["graphql-transport-ws"]
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        assert await _close_code(ws) == (0, 4403)


async def test_logout_closes_the_socket(server):
    base, app, _ = server
    alice = await _token(base, "alice@example.com")
    async for ws in _subscribed(base, alice, BALANCE):
        await _wait_subscribers(app, 1)
        async with httpx.AsyncClient(base_url=base) as client:
            response = await client.post(
                "/graphql",
                json={"query": "mutation { logout }"},
                headers={"Authorization": f"Bearer {alice}"},
            )
            assert response.status_code == 200, response.text
        assert await _close_code(ws) == (0, 4403)


async def test_staff_watch_a_customer_only_by_naming_them(server):
    base, app, _ = server
    operator = await _token(base, "operator@example.com")
    async for ws in _subscribed(base, operator, BALANCE):
        assert await _error_code(ws) == "BAD_USER_INPUT"
    query = "subscription($c: ID) { balanceChanged(customerId: $c) { eventId } }"
    async for ws in _subscribed(base, operator, query, c="Q3VzdG9tZXI6MQ"):
        await _wait_subscribers(app, 1)
        event_id = _publish(server, 1, "balance.changed", **_balance(1))
        assert (await _next(ws))["balanceChanged"]["eventId"] == event_id
    alice = await _token(base, "alice@example.com")
    async for ws in _subscribed(base, alice, query, c="Q3VzdG9tZXI6Mg"):
        assert await _error_code(ws) == "FORBIDDEN"


async def test_a_slow_client_is_dropped_and_others_still_get_events(server):
    base, app, _ = server
    alice, bob = await _token(base, "alice@example.com"), await _token(base, "bob@example.com")
    async for slow in _subscribed(base, alice, BALANCE):
        async for bob_ws in _subscribed(base, bob, BALANCE):
            await _wait_subscribers(app, 2)
            for _ in range(3000):  # far more than a socket that is never read can hold
                _publish(server, 1, "balance.changed", **_balance(1))
            await _wait_subscribers(app, 1)
            event_id = _publish(server, 2, "balance.changed", **_balance(2))
            assert (await _next(bob_ws))["balanceChanged"]["eventId"] == event_id
        received, code = await _close_code(slow)
        assert received < 3000
        assert code == 1013
