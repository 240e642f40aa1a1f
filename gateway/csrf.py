"""CSRF prevention in the manner of Apollo Router: no state-changing simple requests.

A browser sends a cross-site POST without asking first (no CORS preflight) only when its
content type is one of the three "simple" ones and it carries no custom header. Such a
request is refused unless it names a non-simple header that only a preflighted (allowed)
origin could have set. JSON endpoints refuse those content types anyway; this covers
every POST route in one place, including ones a cookie authenticates.
"""

from starlette.datastructures import Headers
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
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class CSRFPrevention:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in UNSAFE_METHODS:
            headers = Headers(scope=scope)
            content_type = headers.get("content-type", "").split(";")[0].strip().lower()
            simple = not content_type or content_type in SIMPLE_CONTENT_TYPES
            if simple and not any(headers.get(name) for name in PREFLIGHT_HEADERS):
                message = (
                    "this request could be a cross-site request forgery: send JSON "
                    "(Content-Type: application/json) or an Apollo-Require-Preflight header"
                )
                response = error_response(scope["path"], 400, "CSRF_REJECTED", message)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
