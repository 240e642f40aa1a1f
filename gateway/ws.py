"""GraphQL over WebSocket (graphql-transport-ws and the legacy graphql-ws), and the watch
that closes sockets whose session ended or whose access token expired.

A socket authenticates once, in `connection_init` (`{"Authorization": "Bearer <token>"}` or
`{"token": "<token>"}`), with the same check as an HTTP request. It can stay open for
hours, so one task per process re-checks every open socket's (and SSE stream's) session in
one store round trip every few seconds and ends the connection once its session ended
(4403) or its token expired (4401: refresh the token, reconnect with `after`).
"""

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from redis.exceptions import RedisError
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.schema import BaseSchema
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL

from domains.errors import Unauthenticated
from domains.identity.session import Sessions
from domains.identity.tokens import AccessClaims, TokenService
from gateway.auth import authenticate, bearer_token
from gateway.metrics import Metrics
from resolvers.context import Context

logger = logging.getLogger("kabinet.ws")

# The client fell behind (reconnect and resume with `after`).
TRY_AGAIN_LATER = 1013
CHECK_INTERVAL_SECONDS = 2.0
CONNECTION_INIT_TIMEOUT = timedelta(seconds=10)


class Ending(Enum):
    """Why the server ends a signed-in live connection: its websocket close code; an SSE
    stream ends with an error whose `extensions.code` is the name."""

    TOKEN_EXPIRED = 4401
    SESSION_ENDED = 4403

    @property
    def message(self) -> str:
        if self is Ending.TOKEN_EXPIRED:
            return "the access token expired: refresh it and subscribe again with `after`"
        return "the session has ended: sign in again"


@dataclass(slots=True)
class _Watched:
    session_id: uuid.UUID
    user_id: int
    expires_at: datetime
    end: Callable[[Ending], None]
    is_websocket: bool


class LiveConnections:
    """The signed-in websockets and SSE streams of this process, and the task that ends the
    ones whose session ended or whose access token expired."""

    def __init__(self, sessions: Sessions, metrics: Metrics) -> None:
        self.sessions = sessions
        # Keyed by the connection's ASGI scope, which lives exactly as long as it does.
        self._open: dict[int, _Watched] = {}
        self._task: asyncio.Task[None] | None = None
        metrics.open_websockets.set_function(
            lambda: sum(1 for entry in self._open.values() if entry.is_websocket)
        )

    async def start(self) -> None:
        self._task = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def add(
        self,
        scope: Scope,
        claims: AccessClaims,
        end: Callable[[Ending], None],
        *,
        is_websocket: bool,
    ) -> None:
        self._open[id(scope)] = _Watched(
            claims.session_id, claims.user_id, claims.expires_at, end, is_websocket
        )

    def discard(self, scope: Scope) -> None:
        self._open.pop(id(scope), None)

    async def check(self) -> None:
        """Ends the connections whose token expired or whose session is no longer alive."""
        now = self.sessions.clock.now()
        for key, entry in list(self._open.items()):
            if entry.expires_at <= now:
                self._end(key, Ending.TOKEN_EXPIRED)
        entries = list(self._open.items())
        if not entries:
            return
        alive = await self.sessions.alive_among([(e.session_id, e.user_id) for _, e in entries])
        for key, entry in entries:
            if entry.session_id not in alive:
                self._end(key, Ending.SESSION_ENDED)

    def _end(self, key: int, ending: Ending) -> None:
        entry = self._open.pop(key, None)
        if entry is not None:
            entry.end(ending)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL_SECONDS)
            try:
                await self.check()
            except (RedisError, OSError):
                # Connections stay open while the store is away; each was checked when it opened.
                logger.exception("session store unreachable; live connections not re-checked")


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):  # already closed by the client or the protocol
        await websocket.close(code=code, reason=reason)


class GraphQLWebSocket(GraphQL[Context, None]):
    """Strawberry's WebSocket protocols for one schema, with Kabinet's auth and Context."""

    def __init__(
        self,
        schema: BaseSchema,
        make_context: Callable[[WebSocket], Awaitable[Context]],
        *,
        tokens: TokenService,
        sessions: Sessions,
        connections: LiveConnections,
    ) -> None:
        super().__init__(
            schema,
            graphql_ide=None,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
            connection_init_wait_timeout=CONNECTION_INIT_TIMEOUT,
        )
        self.make_context = make_context
        self.tokens = tokens
        self.sessions = sessions
        self.connections = connections
        self._closing: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.connections.discard(scope)

    async def get_context(self, request: Any, response: Any) -> Context:
        context = await self.make_context(request)
        context.disconnect = lambda reason: self.close(request, TRY_AGAIN_LATER, reason)
        return context

    def close(self, websocket: WebSocket, code: int, reason: str) -> None:
        """Closes in a task of its own: a stalled client's close waits for its buffer to drain,
        and nothing else may wait with it."""
        self.connections.discard(websocket.scope)
        task = asyncio.create_task(_close(websocket, code, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def on_ws_connect(self, context: Context) -> None:
        token = _token(context.connection_params)
        try:
            if token is None:
                raise Unauthenticated(
                    'send {"Authorization": "Bearer <access token>"} in connection_init'
                )
            viewer, claims = await authenticate(self.tokens, self.sessions, token)
        except Unauthenticated as error:
            raise ConnectionRejectionError({"message": error.message, "code": error.code}) from None
        except (RedisError, OSError):
            logger.exception("session store unreachable")
            raise ConnectionRejectionError(
                {"message": "sessions cannot be checked right now", "code": "SERVICE_UNAVAILABLE"}
            ) from None
        context.viewer = viewer
        websocket = context.request
        self.connections.add(
            websocket.scope,
            claims,
            lambda ending: self.close(websocket, ending.value, ending.name),
            is_websocket=True,
        )


def _token(params: object) -> str | None:
    if not isinstance(params, dict):
        return None
    token = params.get("token")
    if isinstance(token, str) and token.strip():
        return token.strip()
    header = params.get("Authorization") or params.get("authorization")
    return bearer_token(header) if isinstance(header, str) else None
