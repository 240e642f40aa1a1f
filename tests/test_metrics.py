"""Gateway metrics: per-app registries, bounded route labels, ASGI pass-through, exposition."""

from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from gateway.app import create_app
from gateway.metrics import Metrics, MetricsMiddleware, metrics_endpoint
from tests.conftest import make_settings
from tests.servers import ServerProcess, free_socket


async def ok(request: Request) -> Response:
    return PlainTextResponse("ok")


async def boom(request: Request) -> Response:
    raise RuntimeError("boom")


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(await websocket.receive_text())
    await websocket.close()


def build_app(metrics: Metrics) -> Starlette:
    app = Starlette(
        routes=[
            Route("/graphql", ok, methods=["GET", "POST"]),
            Route("/items/{item_id}", ok),
            Route("/boom", boom),
            Mount("/billing", routes=[Route("/invoices/{invoice_id}", ok)]),
            WebSocketRoute("/ws", echo),
            Route("/metrics", metrics_endpoint),
        ],
        middleware=[Middleware(MetricsMiddleware, metrics=metrics)],
    )
    app.state.metrics = metrics
    return app


def generate(metrics: Metrics) -> str:
    return generate_latest(metrics.registry).decode()


def requests(metrics: Metrics, method: str, route: str, status: int) -> float:
    labels = {"method": method, "route": route, "status": str(status)}
    return metrics.registry.get_sample_value("kabinet_http_requests_total", labels) or 0.0


def test_two_instances_keep_separate_counts() -> None:
    first, second = Metrics(), Metrics()
    with TestClient(build_app(first)) as client:
        client.get("/graphql")
        client.get("/graphql")
    with TestClient(build_app(second)) as client:
        client.get("/graphql")
    assert requests(first, "GET", "/graphql", 200) == 2
    assert requests(second, "GET", "/graphql", 200) == 1


def test_route_label_is_the_template_never_the_raw_path() -> None:
    metrics = Metrics()
    with TestClient(build_app(metrics)) as client:
        client.get("/items/42")
        client.get("/items/43")
        client.get("/billing/invoices/7")
        assert client.get("/no/such/page").status_code == 404
        assert client.delete("/graphql").status_code == 405
    assert requests(metrics, "GET", "/items/{item_id}", 200) == 2
    assert requests(metrics, "GET", "/billing/invoices/{invoice_id}", 200) == 1
    assert requests(metrics, "GET", "other", 404) == 1
    assert requests(metrics, "DELETE", "/graphql", 405) == 1
    routes = {
        sample.labels["route"]
        for family in text_string_to_metric_families(generate(metrics))
        for sample in family.samples
        if "route" in sample.labels
    }
    assert routes == {"/items/{item_id}", "/billing/invoices/{invoice_id}", "other", "/graphql"}


def test_unusual_methods_collapse_to_other() -> None:
    metrics = Metrics()
    with TestClient(build_app(metrics)) as client:
        client.request("BREW", "/graphql")
    assert requests(metrics, "other", "/graphql", 405) == 1


def test_unhandled_exception_counts_as_500() -> None:
    metrics = Metrics()
    with TestClient(build_app(metrics), raise_server_exceptions=False) as client:
        assert client.get("/boom").status_code == 500
    assert requests(metrics, "GET", "/boom", 500) == 1


def test_middleware_outside_the_app_sees_its_routes() -> None:
    metrics = Metrics()
    wrapped = MetricsMiddleware(build_app(Metrics()), metrics)
    with TestClient(wrapped) as client:
        client.get("/items/1")
    assert requests(metrics, "GET", "/items/{item_id}", 200) == 1


def test_duration_is_observed_per_route() -> None:
    metrics = Metrics()
    with TestClient(build_app(metrics)) as client:
        client.get("/items/1")
    count = metrics.registry.get_sample_value(
        "kabinet_http_request_duration_seconds_count",
        {"method": "GET", "route": "/items/{item_id}"},
    )
    assert count == 1


@pytest.mark.parametrize("scope_type", ["websocket", "lifespan"])
async def test_non_http_scopes_pass_through_untouched(scope_type: str) -> None:
    seen: list[tuple[Scope, Receive, Send]] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((scope, receive, send))

    async def receive() -> Message:
        return {"type": f"{scope_type}.connect"}

    async def send(message: Message) -> None:
        return None

    scope: Scope = {"type": scope_type, "path": "/ws"}
    metrics = Metrics()
    await MetricsMiddleware(inner, metrics)(scope, receive, send)
    assert len(seen) == 1
    assert seen[0][0] is scope
    assert seen[0][1] is receive
    assert seen[0][2] is send
    assert scope == {"type": scope_type, "path": "/ws"}
    assert "kabinet_http_requests_total{" not in generate(metrics)


def test_websocket_works_through_the_middleware_and_is_not_counted() -> None:
    metrics = Metrics()
    with TestClient(build_app(metrics)) as client, client.websocket_connect("/ws") as websocket:
        websocket.send_text("ping")
        assert websocket.receive_text() == "ping"
    assert "kabinet_http_requests_total{" not in generate(metrics)


def test_domain_counters() -> None:
    metrics = Metrics()
    metrics.observe_graphql("query", "ok", 0.02, [])
    metrics.observe_graphql("mutation", "error", 0.1, ["UNAUTHENTICATED", "BAD_USER_INPUT"])
    metrics.observe_graphql("mutation", "error", 0.1, ["BAD_USER_INPUT"])
    metrics.count_login(True)
    metrics.count_login(False)
    metrics.count_login(False)
    metrics.count_statement()
    value = metrics.registry.get_sample_value
    assert value("kabinet_graphql_operations_total", {"operation_type": "query", "outcome": "ok"})
    assert (
        value(
            "kabinet_graphql_operations_total", {"operation_type": "mutation", "outcome": "error"}
        )
        == 2
    )
    assert value("kabinet_graphql_operation_duration_seconds_count", {"operation_type": "mutation"})
    assert value("kabinet_graphql_errors_total", {"code": "BAD_USER_INPUT"}) == 2
    assert value("kabinet_graphql_errors_total", {"code": "UNAUTHENTICATED"}) == 1
    assert value("kabinet_logins_total", {"outcome": "success"}) == 1
    assert value("kabinet_logins_total", {"outcome": "failure"}) == 2
    assert value("kabinet_db_statements_total") == 1


def test_login_outcomes_are_exported_before_any_login() -> None:
    value = Metrics().registry.get_sample_value
    assert value("kabinet_logins_total", {"outcome": "failure"}) == 0


def test_graphql_outcome_is_bounded() -> None:
    with pytest.raises(ValueError, match="outcome"):
        Metrics().observe_graphql("query", "partial", 0.1, [])


def test_metrics_endpoint_serves_parseable_exposition() -> None:
    metrics = Metrics()
    metrics.count_statement()
    with TestClient(build_app(metrics)) as client:
        client.get("/graphql")
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    assert {
        "kabinet_http_requests",
        "kabinet_http_request_duration_seconds",
        "kabinet_graphql_operations",
        "kabinet_graphql_operation_duration_seconds",
        "kabinet_graphql_errors",
        "kabinet_logins",
        "kabinet_db_statements",
    } <= families.keys()
    assert families["kabinet_http_request_duration_seconds"].type == "histogram"
    samples = {
        (sample.name, sample.labels.get("route")): sample.value
        for sample in families["kabinet_http_requests"].samples
    }
    assert samples[("kabinet_http_requests_total", "/graphql")] == 1


# Where /metrics is served ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "served"),
    [
        ({"env": "development"}, True),
        ({"env": "development", "metrics_port": 9100}, False),
        ({"env": "production"}, False),
        ({"env": "production", "metrics_port": 9100}, False),
    ],
)
async def test_metrics_are_on_the_api_port_in_development_only(
    sqlite_demo_url: str, signing_key: bytes, settings: dict[str, Any], served: bool
):
    app = create_app(make_settings(sqlite_demo_url, signing_key, **settings))
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.get("/metrics")
    finally:
        await app.state.services.aclose()
    if served:
        assert response.status_code == 200
        assert "kabinet_http_requests_total" in response.text
    else:
        assert response.status_code == 404
        assert response.json() == {"error": {"code": "NOT_FOUND", "message": "Not Found"}}


async def test_production_serves_metrics_on_their_own_port_only(
    sqlite_demo_url: str, signing_key: bytes, tmp_path: Path
):
    """The attack: read traffic, error and login counts from the public API port."""
    with free_socket() as sock:
        metrics_port = sock.getsockname()[1]
    server = ServerProcess(
        sqlite_demo_url,
        signing_key,
        tmp_path / "serve.log",
        env="production",
        single_instance="true",
        metrics_port=str(metrics_port),
    )
    try:
        await server.wait_until_ready()
        async with httpx.AsyncClient(timeout=5) as client:
            public = await client.get(f"{server.base}/metrics")
            private = await client.get(f"http://127.0.0.1:{metrics_port}/metrics")
    finally:
        server.stop()
    assert public.status_code == 404
    assert public.json()["error"]["code"] == "NOT_FOUND"
    assert private.status_code == 200
    assert 'kabinet_http_requests_total{method="GET",route="/health/ready",status="200"}' in (
        private.text
    )
