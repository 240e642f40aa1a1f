"""CSRF prevention in the manner of Apollo Router: no state-changing simple requests.

A browser sends a cross-site POST without asking first (no CORS preflight) only when its
content type is one of the three "simple" ones and it carries no custom header. Such a
request is refused unless it names a non-simple header that only a preflighted (allowed)
origin could have set. JSON endpoints refuse those content types anyway; this covers
every POST route in one place, including ones a cookie authenticates. A GraphQL GET is
held to the same test in production (gateway/graphql_http.py): it runs a query, and a
cross-site page could otherwise make a signed-in browser run it.
"""

from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import error_response

SIMPLE_CONTENT_TYPES = frozenset(
    {"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"}
)
# Headers a browser will not send cross-site without a preflight the CORS policy allowed.
PREFLIGHT_HEADERS = (
    "authorization",
    "apollo-require-preflight",
    "x-apollo-operation-name",
    "x-requested-with",
)
# The only state-changing method a browser sends cross-site without a preflight (GET is
# held to the test where it runs operations); DELETE, PUT and PATCH always ask first.
UNSAFE_METHODS = frozenset({"POST"})
CSRF_REJECTED = "CSRF_REJECTED"


def preflighted(headers: Headers) -> bool:
    """Whether a browser could have sent this cross-site only after a CORS preflight: a
    non-simple content type, or one of the headers above."""
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type not in SIMPLE_CONTENT_TYPES:
        return True
    return any(headers.get(name) for name in PREFLIGHT_HEADERS)


class CSRFPrevention:
    """`signed_paths`: routes a signature over the body authenticates (providers'
    callbacks, which post forms): no browser credential rides on them, so there is nothing
    to forge."""

    def __init__(self, app: ASGIApp, signed_paths: Sequence[str] = ()) -> None:
        self.app = app
        self._signed = [compile_path(path)[0] for path in signed_paths]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in UNSAFE_METHODS
            and not preflighted(Headers(scope=scope))
            and not any(pattern.match(scope["path"]) for pattern in self._signed)
        ):
            message = (
                "this request could be a cross-site request forgery: send JSON "
                "(Content-Type: application/json) or an Apollo-Require-Preflight header"
            )
            response = error_response(scope["path"], 400, CSRF_REJECTED, message)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
