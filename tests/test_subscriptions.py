"""Live updates: events reach the subscribed viewer's sockets and SSE streams, and only theirs.

The mechanism's tests put events onto the app's own bus as the relay would; the end-to-end
ones go the whole way: payInvoice over HTTP, the outbox, the relay, the bus (in-process, or
Tansu with two gateway instances on one PostgreSQL database), the hub, the socket. The
sockets are real, on uvicorn servers in threads.
"""

import asyncio
import contextlib
import json
import secrets
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
import websockets
from sqlalchemy import select
from starlette.types import ASGIApp, Receive, Scope, Send
from websockets.asyncio.client import ClientConnection, connect

from domains.database import Database
from domains.events.bus import EventBus
from domains.events.cloudevent import CloudEvent
from domains.events.relay import OutboxRelay
from domains.outbox import OutboxEvent, record_event
from gateway.app import create_app
from gateway.services import Services, event_catalog
from gateway.settings import Settings
from schema.domains import DOMAINS
from tests.conftest import TEST_REDIS_URL, load_demo_into, make_settings, migrated_database
from tests.servers import free_socket, serve

REDIS_URL = TEST_REDIS_URL
BALANCE = "subscription($after: ID) { balanceChanged(after: $after) { eventId reason } }"
PAYMENT = "subscription { paymentCreated { eventId payment { id } } }"
INVOICE = "subscription { invoiceUpdated { eventId invoice { id } } }"
PAY = """
mutation($input: PayInvoiceInput!) { payInvoice(input: $input) { payment { id } } }
"""
OVERDUE = "{ invoices(status: [OVERDUE], first: 1) { edges { node { id } } } }"


class _LoopOf:
    """The app, noting the event loop it runs on, so the test can publish on that loop."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.loop = asyncio.get_running_loop()
        await self.app(scope, receive, send)


Server = tuple[str, Any, _LoopOf]


@contextlib.contextmanager
def _serving(settings: Settings) -> Iterator[Server]:
    """The app on a uvicorn server: its base URL, the app, and where its loop is noted."""
    app = create_app(settings)
    wrapped = _LoopOf(app)
    # Small kernel send buffers: a client that stops reading holds the server back soon.
    with serve(wrapped, free_socket(send_buffer=16_384)) as base:
        yield base, app, wrapped


def _embedded(demo_url: str, signing_key: bytes, **overrides: Any) -> Settings:
    # The tests run the relay themselves, whatever the in-process worker's default.
    return make_settings(
        demo_url, signing_key, subscription_queue_size=4, worker_in_process=False, **overrides
    )


@pytest.fixture
def server(sqlite_demo_copy: str, signing_key: bytes) -> Iterator[Server]:
    with _serving(_embedded(sqlite_demo_copy, signing_key)) as running:
        yield running


async def _token(base: str, email: str) -> str:
    async with httpx.AsyncClient(base_url=base) as client:
        response = await client.post(
            "/auth/login", json={"email": email, "password": "kabinet-demo"}
        )
        return response.json()["access_token"]


async def _publish(server: Server, customer_id: int, type: str, **data: Any) -> str:
    """Puts an event on the app's bus, on the app's loop, as the relay would."""
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
    published = asyncio.run_coroutine_threadsafe(
        bus.publish("kabinet.billing", event.subject, event.to_json()), wrapped.loop
    )
    await asyncio.wait_for(asyncio.wrap_future(published), 10)
    return str(event.id)


def _balance(customer_id: int) -> dict[str, Any]:
    return {"balance": "1.00", "delta": "-1.00", "currency": "EUR", "reason": "payment"}


async def _subscribed(
    base: str,
    token: str,
    query: str,
    protocol: str = "graphql-transport-ws",
    *,
    sock: socket.socket | None = None,
    **variables: Any,
) -> AsyncIterator[ClientConnection]:
    url = base.replace("http", "ws") + "/graphql"
    async with connect(url, subprotocols=[protocol], sock=sock) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await _subscribe(ws, "1", query, **variables)
        yield ws


async def _subscribe(ws: ClientConnection, op: str, query: str, **variables: Any) -> None:
    start = "subscribe" if ws.subprotocol == "graphql-transport-ws" else "start"
    payload = {"query": query, "variables": variables}
    await ws.send(json.dumps({"id": op, "type": start, "payload": payload}))


async def _by_operation(ws: ClientConnection, count: int) -> dict[str, dict[str, Any]]:
    """The next `count` results, by operation id; one operation sending two fails."""
    results: dict[str, dict[str, Any]] = {}
    for _ in range(count):
        message = json.loads(await asyncio.wait_for(ws.recv(), 20))
        assert message["type"] == "next", message
        assert message["id"] not in results, message
        results[message["id"]] = message["payload"]["data"]
    return results


async def _wait_for(condition: Callable[[], bool], failure: str) -> None:
    deadline = asyncio.get_running_loop().time() + 20
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, failure
        await asyncio.sleep(0.01)


async def _wait_subscribers(app: Any, count: int) -> None:
    """The hub holds `count` subscribers: a subscribe message is handled asynchronously."""
    registry = app.state.metrics.registry
    await _wait_for(
        lambda: registry.get_sample_value("kabinet_open_subscriptions") == count,
        f"the hub never held {count} subscribers",
    )


def _slow_consumers(app: Any) -> float:
    return app.state.metrics.registry.get_sample_value("kabinet_subscription_slow_consumers_total")


async def _read_into(ws: ClientConnection, received: list[str]) -> None:
    """Reads the balance events' ids as they come, until cancelled."""
    while True:
        received.append((await _next(ws))["balanceChanged"]["eventId"])


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
            alice_event = await _publish(server, 1, "balance.changed", **_balance(1))
            assert (await _next(alice_ws))["balanceChanged"]["eventId"] == alice_event
            bob_event = await _publish(server, 2, "balance.changed", **_balance(2))
            # Bob's first message is his own event: Alice's never reached him.
            assert (await _next(bob_ws))["balanceChanged"]["eventId"] == bob_event


async def test_sockets_of_one_shape_share_one_render(server):
    """Two sockets, one operation: one feed, the event rendered once and written to both;
    the subscription keeps its operation id taken for as long as it lives."""
    base, app, _ = server
    registry = app.state.metrics.registry
    alice = await _token(base, "alice@example.com")
    async for first in _subscribed(base, alice, BALANCE):
        async for second in _subscribed(base, alice, BALANCE):
            await _wait_subscribers(app, 2)
            assert registry.get_sample_value("kabinet_live_feeds") == 1
            event_id = await _publish(server, 1, "balance.changed", **_balance(1))
            for ws in (first, second):
                assert (await _next(ws))["balanceChanged"]["eventId"] == event_id
            assert registry.get_sample_value("kabinet_live_renders_total") == 1
            assert registry.get_sample_value("kabinet_live_deliveries_total") == 2
            await _subscribe(second, "1", BALANCE)
            assert await _close_code(second) == (0, 4409)
    await _wait_subscribers(app, 0)
    assert registry.get_sample_value("kabinet_live_feeds") == 0


async def test_legacy_graphql_ws_delivers(server):
    base, app, _ = server
    alice = await _token(base, "alice@example.com")
    async for ws in _subscribed(base, alice, BALANCE, protocol="graphql-ws"):
        await _wait_subscribers(app, 1)
        event_id = await _publish(server, 1, "balance.changed", **_balance(1))
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
        event_id = await _publish(server, 1, "balance.changed", **_balance(1))
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
        event_id = await _publish(server, 1, "balance.changed", **_balance(1))
        assert (await _next(ws))["balanceChanged"]["eventId"] == event_id
    alice = await _token(base, "alice@example.com")
    async for ws in _subscribed(base, alice, query, c="Q3VzdG9tZXI6Mg"):
        assert await _error_code(ws) == "FORBIDDEN"


async def test_a_slow_client_is_dropped_and_others_still_get_events(server):
    """A client that stops reading fills its TCP buffers, then its queue of 4: it is dropped
    and closed with 1013, while another subscriber of the same customer gets every event."""
    base, app, _ = server
    alice = await _token(base, "alice@example.com")
    # A tiny receive buffer: the kernel holds little of what the stalled client never reads.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", int(base.rsplit(":", 1)[1])))
    async for slow in _subscribed(base, alice, BALANCE, sock=sock):
        async for fast in _subscribed(base, alice, BALANCE):
            await _wait_subscribers(app, 2)
            received: list[str] = []
            reader = asyncio.create_task(_read_into(fast, received))
            published: list[str] = []
            deadline = asyncio.get_running_loop().time() + 60
            while _slow_consumers(app) == 0:
                assert asyncio.get_running_loop().time() < deadline, "never dropped"
                published.append(await _publish(server, 1, "balance.changed", **_balance(1)))
            await _wait_subscribers(app, 1)
            published.append(await _publish(server, 1, "balance.changed", **_balance(1)))
            await _wait_for(lambda: len(received) == len(published), "the other client lags")  # noqa: B023
            reader.cancel()
            assert received == published
        read, code = await _close_code(slow)
        assert read < len(published)
        assert code == 1013


# End to end: payInvoice → outbox → relay → bus → hub → socket.


@contextlib.asynccontextmanager
async def _relay(
    loop: asyncio.AbstractEventLoop, db: Database, bus: EventBus, settings: Settings
) -> AsyncIterator[None]:
    """The outbox relay publishing on `loop` until the block ends (the in-process bus is
    used on its app's loop only)."""
    relay = OutboxRelay(db, bus, catalog=event_catalog(settings))
    stop = asyncio.Event()
    running = asyncio.wrap_future(asyncio.run_coroutine_threadsafe(relay.run(stop), loop))
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        await asyncio.wait_for(running, 20)


@contextlib.asynccontextmanager
async def _embedded_relay(server: Server) -> AsyncIterator[None]:
    """The relay of the embedded mode: the app's database and in-process bus, on its loop."""
    _base, app, wrapped = server
    services: Services = app.state.services
    assert wrapped.loop is not None
    async with _relay(wrapped.loop, services.db, services.bus, services.settings):
        yield


async def _graphql(base: str, token: str, query: str, **variables: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, timeout=20) as client:
        response = await client.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {token}"},
        )
    body = response.json()
    assert response.status_code == 200, body
    assert "errors" not in body, body
    return body["data"]


async def _overdue_invoice(base: str, token: str) -> str:
    return (await _graphql(base, token, OVERDUE))["invoices"]["edges"][0]["node"]["id"]


async def _pay(base: str, token: str, invoice_id: str) -> str:
    """Pays 1.00 of the invoice from the balance (not all of it: it stays payable)."""
    variables = {
        "invoiceId": invoice_id,
        "method": "BALANCE",
        "amount": "1.00",
        "idempotencyKey": str(uuid.uuid4()),
    }
    return (await _graphql(base, token, PAY, input=variables))["payInvoice"]["payment"]["id"]


async def _bobs_balance_change(db: Database) -> str:
    """An event of Bob's in the outbox, as a domain action writes one: the first message of
    his subscription proves that nothing of Alice's, relayed before it, reached him."""
    payload = {
        "version": 1,
        "customer_id": 2,
        "balance": "151.00",
        "delta": "1.00",
        "currency": "RUB",
        "reason": "top_up",
    }
    async with db.transaction() as session:
        return str(await record_event(session, "balance.changed", "customer:2", payload))


async def _alices_balance_events(db: Database) -> list[str]:
    """Alice's `balance.changed` event ids in the outbox, oldest first."""
    outbox = OutboxEvent.__table__
    async with db.connect() as conn:
        rows = await conn.execute(
            select(outbox.c.id)
            .where(outbox.c.subject == "customer:1", outbox.c.type == "balance.changed")
            .order_by(outbox.c.occurred_at, outbox.c.id)
        )
        return [str(row.id) for row in rows]


async def test_paying_an_invoice_reaches_the_customers_subscriptions_only(server):
    base, app, wrapped = server
    alice, bob = await _token(base, "alice@example.com"), await _token(base, "bob@example.com")
    invoice = await _overdue_invoice(base, alice)
    assert wrapped.loop is not None
    async with _embedded_relay(server):
        async for alice_ws in _subscribed(base, alice, PAYMENT):
            await _subscribe(alice_ws, "2", BALANCE)
            await _subscribe(alice_ws, "3", INVOICE)
            async for bob_ws in _subscribed(base, bob, BALANCE):
                await _wait_subscribers(app, 4)
                payment = await _pay(base, alice, invoice)
                got = await _by_operation(alice_ws, 3)
                assert got["1"]["paymentCreated"]["payment"]["id"] == payment
                assert got["2"]["balanceChanged"]["reason"] == "payment"
                assert got["3"]["invoiceUpdated"]["invoice"]["id"] == invoice
                # Written in the app's process, as a domain action there would: the commit
                # wakes the embedded relay.
                bobs = await asyncio.wrap_future(
                    asyncio.run_coroutine_threadsafe(
                        _bobs_balance_change(app.state.services.db), wrapped.loop
                    )
                )
                assert (await _next(bob_ws))["balanceChanged"]["eventId"] == bobs


async def test_a_resuming_client_gets_what_it_missed_from_the_database_then_live(
    server, sqlite_demo_copy
):
    base, app, _ = server
    alice, bob = await _token(base, "alice@example.com"), await _token(base, "bob@example.com")
    invoice = await _overdue_invoice(base, alice)
    db = Database(sqlite_demo_copy)
    try:
        async with _embedded_relay(server):
            async for ws in _subscribed(base, alice, BALANCE):
                await _wait_subscribers(app, 1)
                await _pay(base, alice, invoice)
                seen = (await _next(ws))["balanceChanged"]["eventId"]
            await _wait_subscribers(app, 0)
            # Paid while no socket was open: the hub had nobody to give these to.
            await _pay(base, alice, invoice)
            await _pay(base, alice, invoice)
            missed = (await _alices_balance_events(db))[-2:]
            async for ws in _subscribed(base, alice, BALANCE, after=seen):
                assert [(await _next(ws))["balanceChanged"]["eventId"] for _ in missed] == missed
                await _wait_subscribers(app, 1)
                await _pay(base, alice, invoice)
                newest = (await _alices_balance_events(db))[-1]
                # The relay's copies of the missed events came before this one, if at all:
                # the next message being the newest event shows they were skipped.
                assert (await _next(ws))["balanceChanged"]["eventId"] == newest
            for token, after, code in [
                (alice, str(uuid.uuid4()), "NOT_FOUND"),  # no such event
                (bob, seen, "NOT_FOUND"),  # Alice's event: not Bob's to resume from
                (alice, "not-an-event-id", "BAD_USER_INPUT"),
            ]:
                async for ws in _subscribed(base, token, BALANCE, after=after):
                    assert await _error_code(ws) == code
    finally:
        await db.dispose()


@pytest_asyncio.fixture
async def pg_live_url() -> AsyncIterator[str]:
    """A PostgreSQL database of its own with the demo data: these tests pay."""
    async with migrated_database("kabinet_live") as url:
        await load_demo_into(url)
        yield url


async def test_two_gateways_on_kafka_each_deliver_to_their_own_subscribers(
    pg_live_url, signing_key, kafka_bootstrap
):
    """Two API instances on one PostgreSQL database, one Tansu broker and one relay (a
    worker of its own): a subscriber of Alice's on each gets her payment; Bob nothing."""
    prefix = f"live-{secrets.token_hex(4)}"
    settings = make_settings(
        pg_live_url,
        signing_key,
        redis_url=REDIS_URL,  # the instances share sessions
        kafka_bootstrap=kafka_bootstrap,
        kafka_idempotent_producer=False,  # Tansu has no InitProducerId
        kafka_topics={domain.name: f"{prefix}.{domain.name}" for domain in DOMAINS},
    )
    worker = Services.from_settings(settings)
    await worker.bus.start()
    try:
        with _serving(settings) as one, _serving(settings) as two:
            (base_one, app_one, _), (base_two, app_two, _) = one, two
            alice = await _token(base_one, "alice@example.com")
            bob = await _token(base_two, "bob@example.com")
            invoice = await _overdue_invoice(base_two, alice)
            async with _relay(asyncio.get_running_loop(), worker.db, worker.bus, settings):
                async for on_one in _subscribed(base_one, alice, PAYMENT):
                    await _subscribe(on_one, "2", BALANCE)
                    await _subscribe(on_one, "3", INVOICE)
                    async for on_two in _subscribed(base_two, alice, PAYMENT):
                        async for bob_ws in _subscribed(base_two, bob, BALANCE):
                            await _wait_subscribers(app_one, 3)
                            await _wait_subscribers(app_two, 2)
                            payment = await _pay(base_two, alice, invoice)
                            got = await _by_operation(on_one, 3)
                            assert got["1"]["paymentCreated"]["payment"]["id"] == payment
                            assert got["2"]["balanceChanged"]["reason"] == "payment"
                            assert got["3"]["invoiceUpdated"]["invoice"]["id"] == invoice
                            assert (await _next(on_two))["paymentCreated"] == got["1"][
                                "paymentCreated"
                            ]
                            bobs = await _bobs_balance_change(worker.db)
                            assert (await _next(bob_ws))["balanceChanged"]["eventId"] == bobs
    finally:
        await worker.bus.stop()
        await worker.aclose()


# SSE streams end as sockets are closed: on logout, and when the access token expires.


@contextlib.asynccontextmanager
async def _sse(base: str, token: str, query: str) -> AsyncIterator[httpx.Response]:
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    async with (
        httpx.AsyncClient(base_url=base, timeout=20) as client,
        client.stream("POST", "/graphql", json={"query": query}, headers=headers) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        yield response


async def _sse_ending(response: httpx.Response) -> list[tuple[str, str]]:
    """Every (event, data) the stream sends until the server ends it."""
    events: list[tuple[str, str]] = []
    kind = ""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data:"):
            events.append((kind, line.removeprefix("data:").strip()))
    return events


def _ended_with(events: list[tuple[str, str]]) -> str:
    """The error code of the stream's last `next`, checking that `complete` followed it."""
    assert [kind for kind, _ in events[-2:]] == ["next", "complete"], events
    return json.loads(events[-2][1])["errors"][0]["extensions"]["code"]


async def test_logout_ends_an_sse_stream(server):
    base, app, _ = server
    alice = await _token(base, "alice@example.com")
    async with _sse(base, alice, BALANCE) as response:
        await _wait_subscribers(app, 1)
        await _graphql(base, alice, "mutation { logout }")
        assert _ended_with(await asyncio.wait_for(_sse_ending(response), 20)) == "SESSION_ENDED"
    await _wait_subscribers(app, 0)


async def test_an_expired_token_ends_sockets_and_sse_streams(sqlite_demo_copy, signing_key):
    """Tokens valid for 3 seconds: enough to subscribe with, then the watch ends both."""
    settings = _embedded(sqlite_demo_copy, signing_key, access_token_ttl=timedelta(seconds=3))
    with _serving(settings) as (base, app, _):
        alice = await _token(base, "alice@example.com")
        async with _sse(base, alice, BALANCE) as response:
            async for ws in _subscribed(base, alice, BALANCE):
                assert await _close_code(ws) == (0, 4401)
            ending = await asyncio.wait_for(_sse_ending(response), 20)
            assert _ended_with(ending) == "TOKEN_EXPIRED"
        await _wait_subscribers(app, 0)


async def test_a_user_holds_a_bounded_number_of_subscriptions(sqlite_demo_copy, signing_key):
    """Over the limit a subscription is refused with its code; ending one frees a place."""
    with _serving(_embedded(sqlite_demo_copy, signing_key, subscriptions_per_user=2)) as running:
        base, app, _ = running
        alice = await _token(base, "alice@example.com")
        async for ws in _subscribed(base, alice, BALANCE):
            await _subscribe(ws, "2", BALANCE)
            await _wait_subscribers(app, 2)
            await _subscribe(ws, "3", BALANCE)
            assert await _error_code(ws) == "TOO_MANY_SUBSCRIPTIONS"
            assert json.loads(await ws.recv()) == {"id": "3", "type": "complete"}
            await ws.send(json.dumps({"id": "2", "type": "complete"}))
            await _wait_subscribers(app, 1)
            await _subscribe(ws, "4", BALANCE)
            await _wait_subscribers(app, 2)
            event = await _publish(running, 1, "balance.changed", **_balance(1))
            results = await _by_operation(ws, 2)
            assert {op: data["balanceChanged"]["eventId"] for op, data in results.items()} == {
                "1": event,
                "4": event,
            }
