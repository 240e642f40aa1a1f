"""Bearer authentication: verifies the access token and its session once per request, and
records the viewer. The session check is what makes logout and revocation take effect before
the token expires."""

import logging

from redis.exceptions import RedisError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from domains.database import DatabaseBusy
from domains.errors import Unauthenticated
from domains.identity.session import Sessions
from domains.identity.tokens import AccessClaims, TokenService
from domains.identity.viewer import Viewer
from gateway.errors import error_response

logger = logging.getLogger("kabinet.auth")


class BearerAuth:
    """No header: anonymous viewer. A bad or expired token, or an ended session: 401 before
    any handler runs."""

    def __init__(self, app: ASGIApp, tokens: TokenService, sessions: Sessions) -> None:
        self.app = app
        self.tokens = tokens
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        viewer = None
        header = Headers(scope=scope).get("authorization")
        if header is not None:
            try:
                viewer = await self._viewer(header)
            except Unauthenticated as error:
                response = error_response(
                    scope["path"],
                    401,
                    error.code,
                    error.message,
                    {"WWW-Authenticate": 'Bearer error="invalid_token"'},
                )
                await response(scope, receive, send)
                return
            except DatabaseBusy as error:  # the session's table, when it is read or touched
                response = error_response(scope["path"], 503, error.code, error.message)
                await response(scope, receive, send)
                return
            except (RedisError, OSError):
                # Without the session store no token can be checked; say so, don't guess.
                logger.exception("session store unreachable")
                response = error_response(
                    scope["path"],
                    503,
                    "SERVICE_UNAVAILABLE",
                    "sessions cannot be checked right now; try again shortly",
                    {"Retry-After": "5"},
                )
                await response(scope, receive, send)
                return
        scope.setdefault("state", {})["viewer"] = viewer
        await self.app(scope, receive, send)

    async def _viewer(self, header: str) -> Viewer:
        token = bearer_token(header)
        if token is None:
            raise Unauthenticated("use 'Authorization: Bearer <access token>'")
        viewer, _claims = await authenticate(self.tokens, self.sessions, token)
        return viewer


def bearer_token(header: str) -> str | None:
    """The token of a `Bearer <token>` Authorization value; None for any other form."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


async def authenticate(
    tokens: TokenService, sessions: Sessions, token: str
) -> tuple[Viewer, AccessClaims]:
    """The viewer an access token names, if its session is alive; the same for every transport."""
    claims = tokens.verify_access_token(token)
    if not await sessions.is_alive(claims.session_id, claims.user_id):
        raise Unauthenticated("the session has ended: sign in again")
    return Viewer(claims.user_id, claims.role, claims.customer_id, claims.session_id), claims
