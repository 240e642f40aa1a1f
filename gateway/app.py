"""The application, wired in one place from settings."""

import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from dataloaders import Loaders
from domains.billing.promised_payment import PromiseTerms
from domains.clock import SYSTEM_CLOCK, Clock
from domains.database import DatabaseBusy
from domains.notifications.delivery_report import DeliveryReports
from gateway.auth import BearerAuth
from gateway.csrf import CSRFPrevention
from gateway.errors import error_response
from gateway.graphiql import graphiql_asset_routes, graphiql_html
from gateway.graphql_http import GraphQLEndpoint
from gateway.metrics import MetricsMiddleware, metrics_endpoint
from gateway.notify_channels import report_secrets
from gateway.ratelimit import graphql_rate_limit
from gateway.rest import rest_routes
from gateway.router_secret import RouterOnly, subgraphs_off
from gateway.services import Services
from gateway.settings import Settings
from gateway.worker import Worker
from gateway.ws import GraphQLWebSocket, LiveConnections
from resolvers.context import Context
from schema.domains import DOMAINS
from schema.federation import (
    NODE_LOADERS,
    SUBGRAPHS,
    Extension,
    build_composed,
    build_subgraph,
    standard_extensions,
)
from schema.guards.extensions import hardening_extensions
from schema.planned import Execution
from subscriptions.hub import Hub

logger = logging.getLogger("kabinet")

GRAPHIQL_ASSETS = "/graphiql/assets"


RATE_LIMIT_HEADERS = ["RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "Retry-After"]


class Gateway:
    """The ASGI app: HTTP and lifespan through Starlette and its middleware; a websocket at
    /graphql straight to the GraphQL socket, behind only the proxy headers. No HTTP
    middleware applies to a websocket, yet each layer would stay on its stack for the
    socket's hours (thousands of sockets, each holding the stack's frames)."""

    def __init__(self, http: Starlette, graphql_ws: ASGIApp) -> None:
        self.http = http
        self.graphql_ws = graphql_ws
        self.state = http.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == "/graphql":
            await self.graphql_ws(scope, receive, send)
        else:
            await self.http(scope, receive, send)


def create_app(
    settings: Settings, subgraph: str | None = None, *, clock: Clock = SYSTEM_CLOCK
) -> Gateway:
    """The whole API; or, given `subgraph`, that subgraph alone at /graphql (for a federation
    router), with the health and metrics routes. Tests hand in a clock they move."""
    if "*" in settings.cors_origins:
        raise ValueError("KABINET_CORS_ORIGINS must list origins; '*' is not allowed")
    if subgraph is not None and not settings.subgraphs_served:
        raise RuntimeError(
            "production serves a subgraph to a router only: set KABINET_ROUTER_SECRET"
        )
    services = Services.from_settings(settings, clock)
    metrics = services.metrics
    services.db.on_statement.add(lambda _sql: metrics.count_statement())

    hub = Hub(
        services.bus,
        services.events.all_topics,
        queue_size=settings.subscription_queue_size,
        max_per_owner=settings.subscriptions_per_user,
        on_slow_consumer=metrics.slow_consumers.inc,
        on_render=metrics.count_render,
    )
    metrics.open_subscriptions.set_function(lambda: hub.subscriber_count)
    metrics.live_feeds.set_function(lambda: hub.feed_count)
    connections = LiveConnections(services.auth.sessions, metrics)
    delivery_reports = DeliveryReports(
        report_secrets(settings), tolerance=settings.sms_report_tolerance
    )

    async def make_context(request: Request | WebSocket) -> Context:
        return Context(
            db=services.db,
            auth=services.auth,
            loaders=Loaders(services.db),
            # A websocket's viewer comes from its connection_init, not from a header.
            viewer=getattr(request.state, "viewer", None),
            events=services.events,
            request=request,
            nodes=NODE_LOADERS,
            acquiring=services.acquiring,
            clock=services.clock,
            ticket_reopen_window=timedelta(days=settings.ticket_reopen_days),
            delivery_reports=delivery_reports,
            promise_terms=PromiseTerms(
                settings.promised_payment_max,
                settings.promised_payment_days,
                settings.promised_payments_per_28_days,
            ),
            lifecycle=settings.lifecycle_terms,
            hub=hub,
            catch_up_limit=settings.subscription_catch_up_limit,
        )

    def extensions() -> list[Extension]:
        """Per schema, in order: caches and error codes, limits and cost, then the budget."""
        return [
            *standard_extensions(),
            *hardening_extensions(
                max_depth=settings.graphql_max_depth,
                max_aliases=settings.graphql_max_aliases,
                max_tokens=settings.graphql_max_tokens,
                max_directives=settings.graphql_max_directives,
                max_cost=settings.graphql_max_cost,
                max_representations=settings.graphql_max_representations,
                introspection=settings.introspection_enabled,
                suggestions=settings.field_suggestions_enabled,
            ),
            graphql_rate_limit(services.budgets),
        ]

    def endpoint(schema_path: str, schema: object) -> GraphQLEndpoint:
        page = (
            graphiql_html(
                endpoint=schema_path,
                subscription_endpoint=schema_path,
                asset_prefix=GRAPHIQL_ASSETS,
            )
            if settings.graphiql_enabled
            else None
        )
        return GraphQLEndpoint(
            schema,  # type: ignore[arg-type]
            make_context,
            graphiql_page=page,
            persisted=services.persisted,
            tokens=services.tokens,
            connections=connections,
            max_batch=settings.graphql_batch_limit,
            max_body_bytes=settings.max_body_bytes,
            max_tokens=settings.graphql_max_tokens,
            get_needs_preflight=settings.graphql_get_preflight_required,
        )

    def for_router(app: ASGIApp) -> ASGIApp:
        """A subgraph endpoint: behind the router secret when one is set."""
        if settings.router_secret is None:
            return app
        return RouterOnly(app, settings.router_secret.get_secret_value())

    execution = Execution(settings.graphql_execution)
    served = (
        build_composed(extensions(), execution)
        if subgraph is None
        else build_subgraph(subgraph, extensions(), execution)
    )
    graphql_http: ASGIApp = endpoint("/graphql", served)
    graphql_ws: ASGIApp = GraphQLWebSocket(
        served,
        make_context,
        tokens=services.tokens,
        sessions=services.auth.sessions,
        connections=connections,
    )
    if subgraph is not None:  # one subgraph at /graphql, for a router
        graphql_http, graphql_ws = for_router(graphql_http), for_router(graphql_ws)
    routes: list[BaseRoute] = [
        Route("/graphql", graphql_http),
        Route("/health/live", live, methods=["GET"]),
        Route("/health/ready", ready, methods=["GET"]),
    ]
    if settings.metrics_on_api_port:
        routes.append(Route("/metrics", metrics_endpoint, methods=["GET"]))
    if subgraph is None and not settings.subgraphs_served:
        routes.append(Route("/subgraphs/{name}/graphql", subgraphs_off, methods=["GET", "POST"]))
    elif subgraph is None:
        routes += [
            Route(
                f"/subgraphs/{name}/graphql",
                for_router(
                    endpoint(
                        f"/subgraphs/{name}/graphql", build_subgraph(name, extensions(), execution)
                    )
                ),
            )
            for name in SUBGRAPHS
        ]
    if subgraph is None:
        routes += [
            *rest_routes(DOMAINS, services, make_context),
            Route("/.well-known/jwks.json", jwks, methods=["GET"]),
        ]
    if settings.graphiql_enabled:
        routes += graphiql_asset_routes(settings.node_modules, GRAPHIQL_ASSETS)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        """Starts in order and stops in reverse: the bus, then what reads from it."""
        async with contextlib.AsyncExitStack() as running:
            running.push_async_callback(services.aclose)
            await services.bus.start()
            running.push_async_callback(services.bus.stop)
            await hub.start()
            running.push_async_callback(hub.stop)
            await connections.start()
            running.push_async_callback(connections.stop)
            if settings.run_worker_in_process:
                worker = Worker(
                    services,
                    registry=metrics.registry,
                    billing_schedule=settings.billing_schedule is True,
                    support_schedule=settings.support_schedule is True,
                )
                await worker.start()
                running.push_async_callback(worker.stop)
            yield

    app = Starlette(
        routes=routes,
        middleware=[
            # First, so every later layer (budgets, sessions, metrics) sees the client.
            Middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies),
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST"],
                allow_headers=[
                    "Authorization",
                    "Content-Type",
                    "Accept",
                    "Apollo-Require-Preflight",
                ],
                expose_headers=RATE_LIMIT_HEADERS,
                # Tokens travel in headers; only the refresh cookie needs credentials.
                allow_credentials=settings.refresh_cookie,
                max_age=600,
            ),
            Middleware(
                CSRFPrevention,
                signed_paths=[
                    route.path for domain in DOMAINS for route in domain.rest if route.signed_body
                ],
            ),
            Middleware(MetricsMiddleware, metrics=metrics),
            Middleware(BearerAuth, tokens=services.tokens, sessions=services.auth.sessions),
        ],
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error},
    )
    app.state.services = services
    app.state.metrics = metrics
    # The socket's budgets and sessions see the client as HTTP requests do.
    return Gateway(app, ProxyHeadersMiddleware(graphql_ws, trusted_hosts=settings.trusted_proxies))


_HTTP_ERROR_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}


async def http_error(request: Request, exc: HTTPException) -> Response:
    """The router's own refusals (no such route, wrong method) in JSON, like every other."""
    code = _HTTP_ERROR_CODES.get(exc.status_code, "BAD_REQUEST")
    return error_response(request.url.path, exc.status_code, code, exc.detail, exc.headers)


async def jwks(request: Request) -> Response:
    services: Services = request.app.state.services
    return JSONResponse(services.tokens.jwks(), headers={"Cache-Control": "public, max-age=300"})


async def live(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    """Ready when the database answers on both pools; orchestrators stop routing traffic
    otherwise. A pool that stays full (or a server out of connections) says "busy": up, but
    not serving."""
    services: Services = request.app.state.services
    try:
        await services.db.ping()
    except DatabaseBusy:
        return JSONResponse({"status": "unavailable", "database": "busy"}, status_code=503)
    except Exception:
        logger.exception("readiness check failed")
        return JSONResponse({"status": "unavailable", "database": "down"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "up"})
