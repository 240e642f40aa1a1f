"""Prometheus metrics for the gateway, each app owning its own registry so tests can build many."""

import time
from collections.abc import Iterable, Sequence

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

OTHER = "other"
"""Label value for anything outside a bounded set: unmatched routes (never raw URLs), odd verbs."""

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_OUTCOMES = frozenset({"ok", "error"})


class Metrics:
    """The gateway's metrics, registered in a registry of their own rather than the global one."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "kabinet_http_requests",
            "HTTP requests served, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_request_duration = Histogram(
            "kabinet_http_request_duration_seconds",
            "Time from receiving an HTTP request to finishing its response.",
            ["method", "route"],
            registry=self.registry,
        )
        self.graphql_operations = Counter(
            "kabinet_graphql_operations",
            "GraphQL operations executed, by operation type and outcome (ok or error).",
            ["operation_type", "outcome"],
            registry=self.registry,
        )
        self.graphql_operation_duration = Histogram(
            "kabinet_graphql_operation_duration_seconds",
            "Time spent executing a GraphQL operation.",
            ["operation_type"],
            registry=self.registry,
        )
        self.graphql_errors = Counter(
            "kabinet_graphql_errors",
            "GraphQL errors returned to clients, by extensions.code.",
            ["code"],
            registry=self.registry,
        )
        self.logins = Counter(
            "kabinet_logins",
            "Login attempts, by outcome (success or failure).",
            ["outcome"],
            registry=self.registry,
        )
        self.db_statements = Counter(
            "kabinet_db_statements",
            "SQL statements sent to the database.",
            registry=self.registry,
        )
        self.open_subscriptions = Gauge(
            "kabinet_open_subscriptions",
            "GraphQL subscriptions this process is streaming (WebSocket and SSE).",
            registry=self.registry,
        )
        self.open_websockets = Gauge(
            "kabinet_open_websockets",
            "Signed-in GraphQL WebSocket connections held by this process.",
            registry=self.registry,
        )
        self.live_feeds = Gauge(
            "kabinet_live_feeds",
            "Subscription shapes this process renders events for (subscribers of one "
            "operation, variables and scope share one).",
            registry=self.registry,
        )
        self.live_renders = Counter(
            "kabinet_live_renders",
            "Events executed and encoded for a feed: once per feed, however many subscribe.",
            registry=self.registry,
        )
        self.live_deliveries = Counter(
            "kabinet_live_deliveries",
            "Rendered events handed to a subscriber (written, or buffered for its transport).",
            registry=self.registry,
        )
        self.slow_consumers = Counter(
            "kabinet_subscription_slow_consumers",
            "Subscribers dropped because their event queue overflowed.",
            registry=self.registry,
        )
        # Both series exist from the start, so failure-ratio alerts see 0 rather than nothing.
        for outcome in ("success", "failure"):
            self.logins.labels(outcome=outcome)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one finished HTTP request; unknown methods collapse to "other"."""
        method = method if method in _METHODS else OTHER
        self.http_requests.labels(method=method, route=route, status=str(status)).inc()
        self.http_request_duration.labels(method=method, route=route).observe(seconds)

    def observe_graphql(
        self, operation_type: str, outcome: str, seconds: float, error_codes: Sequence[str]
    ) -> None:
        """Record one executed GraphQL operation and one error per entry of `error_codes`."""
        if outcome not in _OUTCOMES:
            raise ValueError(f"outcome must be one of {sorted(_OUTCOMES)}, not {outcome!r}")
        self.graphql_operations.labels(operation_type=operation_type, outcome=outcome).inc()
        self.graphql_operation_duration.labels(operation_type=operation_type).observe(seconds)
        for code in error_codes:
            self.graphql_errors.labels(code=code).inc()

    def count_login(self, success: bool) -> None:
        self.logins.labels(outcome="success" if success else "failure").inc()

    def count_statement(self) -> None:
        self.db_statements.inc()

    def count_render(self, delivered: int) -> None:
        """One event rendered for a feed, given to `delivered` subscribers."""
        self.live_renders.inc()
        self.live_deliveries.inc(delivered)


def route_template(routes: Iterable[BaseRoute], scope: Scope) -> str | None:
    """The path template of the route Starlette's router would pick, joined across mounts.

    Like the router, a full match wins over a partial one (a known path with the wrong method).
    """
    partial: tuple[BaseRoute, Scope] | None = None
    for route in routes:
        match, child_scope = route.matches(scope)
        if match is Match.FULL:
            return _joined_template(route, {**scope, **child_scope})
        if match is Match.PARTIAL and partial is None:
            partial = (route, {**scope, **child_scope})
    return None if partial is None else _joined_template(*partial)


def _joined_template(route: BaseRoute, scope: Scope) -> str | None:
    if not isinstance(route, Mount):
        return getattr(route, "path", None)
    if not route.routes:  # a mounted plain ASGI app, such as static files
        return route.path
    inner = route_template(route.routes, scope)
    return None if inner is None else route.path + inner


class MetricsMiddleware:
    """Counts and times HTTP requests by route template; other scope types pass through as they are.

    The routes are those of the Starlette app in `scope["app"]`, or of the wrapped app itself
    when this middleware sits outside it.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        routes = getattr(scope.get("app", self.app), "routes", ())
        route = route_template(routes, scope) or OTHER
        status = 500  # what the client gets if the app raises before starting a response

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_status)
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.observe_request(scope["method"], route, status, elapsed)


async def metrics_endpoint(request: Request) -> Response:
    """The Prometheus text exposition of the app's own registry."""
    metrics: Metrics = request.app.state.metrics
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
