"""Subgraph endpoints answer a federation router, which proves itself with a shared secret.

A subgraph serves `_service { sdl }` (the whole schema, introspection or not) and
`_entities` (any object by its key, with none of /graphql's root fields in front of it):
what a router needs and no client should have. So with `KABINET_ROUTER_SECRET` set, every
request to a subgraph endpoint, HTTP or websocket, must carry it in ROUTER_SECRET_HEADER;
in production without it, they are off.
"""

import hmac

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketClose

from gateway.errors import graphql_error_response

ROUTER_SECRET_HEADER = "kabinet-router-secret"  # noqa: S105 - the header's name
ROUTER_ONLY = "ROUTER_ONLY"
# A websocket refused for policy reasons (RFC 6455).
POLICY_VIOLATION = 1008


class RouterOnly:
    """Passes requests that carry the router secret to `app`; refuses the others (403)."""

    def __init__(self, app: ASGIApp, secret: str) -> None:
        self.app = app
        self.secret = secret.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        given = Headers(scope=scope).get(ROUTER_SECRET_HEADER, "").encode()
        if hmac.compare_digest(given, self.secret):
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await WebSocketClose(POLICY_VIOLATION)(scope, receive, send)
        else:
            response = _refused(
                "this is a subgraph endpoint: it answers a federation router that sends "
                "the Kabinet-Router-Secret header, not clients (use /graphql)"
            )
            await response(scope, receive, send)


async def subgraphs_off(_request: Request) -> Response:
    """What the subgraph endpoints answer in production when no router secret is set."""
    return _refused("subgraph endpoints are off: set KABINET_ROUTER_SECRET to serve a router")


def _refused(message: str) -> Response:
    return graphql_error_response(403, ROUTER_ONLY, message)
