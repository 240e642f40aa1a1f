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

import orjson
from redis.exceptions import RedisError
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.schema import BaseSchema
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler

from domains.errors import Unauthenticated
from domains.identity.session import Sessions
from domains.identity.tokens import AccessClaims, TokenService
from gateway.auth import authenticate, bearer_token
from gateway.metrics import Metrics
from gateway.websocket_protocol import FRAMES, LiveWebSocketProtocol
from resolvers.context import Context
from resolvers.live import DELIVERY, Delivery
from subscriptions.hub import SlowConsumer, Subscriber

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
    expires_at: datetime
    end: Callable[[Ending], None]
    is_websocket: bool


# A session as the store knows it: (session id, user id).
_Session = tuple[uuid.UUID, int]


class LiveConnections:
    """The signed-in websockets and SSE streams of this process, and the task that ends the
    ones whose session ended or whose access token expired.

    Watched by session: a customer's many sockets (tabs, devices on one sign-in) are one
    store lookup per check, not one each."""

    def __init__(self, sessions: Sessions, metrics: Metrics) -> None:
        self.sessions = sessions
        # Keyed by the connection's ASGI scope, which lives exactly as long as it does.
        self._by_session: dict[_Session, dict[int, _Watched]] = {}
        self._session_of: dict[int, _Session] = {}
        self._task: asyncio.Task[None] | None = None
        metrics.open_websockets.set_function(
            lambda: sum(
                1
                for connections in self._by_session.values()
                for entry in connections.values()
                if entry.is_websocket
            )
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
        session = (claims.session_id, claims.user_id)
        self.discard(scope)
        self._session_of[id(scope)] = session
        self._by_session.setdefault(session, {})[id(scope)] = _Watched(
            claims.expires_at, end, is_websocket
        )

    def discard(self, scope: Scope) -> None:
        self._pop(id(scope))

    async def check(self) -> None:
        """Ends the connections whose token expired or whose session is no longer alive."""
        now = self.sessions.clock.now()
        for key, session in list(self._session_of.items()):
            if self._by_session[session][key].expires_at <= now:
                self._end(key, Ending.TOKEN_EXPIRED)
        watched = list(self._by_session)
        if not watched:
            return
        alive = await self.sessions.alive_among(watched)
        for session in watched:
            if session[0] not in alive:
                for key in list(self._by_session.get(session, ())):
                    self._end(key, Ending.SESSION_ENDED)

    def _pop(self, key: int) -> _Watched | None:
        session = self._session_of.pop(key, None)
        if session is None:
            return None
        connections = self._by_session[session]
        entry = connections.pop(key)
        if not connections:
            del self._by_session[session]
        return entry

    def _end(self, key: int, ending: Ending) -> None:
        entry = self._pop(key)
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


class _Frames:
    """One operation's `next` messages written straight to its socket (see `Writer`)."""

    __slots__ = ("_after", "_before", "_protocol")

    def __init__(self, protocol: LiveWebSocketProtocol, before: bytes, after: bytes) -> None:
        self._protocol = protocol
        self._before = before
        self._after = after

    def ready(self) -> bool:
        return self._protocol.ready()

    def write(self, body: bytes) -> None:
        self._protocol.write_text(self._before + body + self._after)

    def when_ready(self, flush: Callable[[], None] | None) -> None:
        if flush is None:
            self._protocol.resumed.pop(self, None)
        else:
            self._protocol.resumed[self] = flush


def _delivery(
    websocket: WebSocket,
    before: bytes,
    query: str,
    variables: dict[str, Any] | None,
    operation_name: str | None,
    adopt: Callable[[Subscriber], None] | None = None,
) -> Delivery:
    """A socket's delivery of one operation: its `next` messages are a feed's body between
    `before` and `}`; written directly when the server's protocol allows it."""
    after = b"}"

    async def send(body: bytes) -> None:
        await websocket.send_text((before + body + after).decode())

    protocol = (websocket.scope.get("extensions") or {}).get(FRAMES)
    writer = None if protocol is None else _Frames(protocol, before, after)
    return Delivery(query, variables, operation_name, send, writer, adopt)


class _TransportWS(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws, its subscriptions delivered by the hub's feeds.

    A subscription written to directly is adopted once caught up: its operation's task and
    everything strawberry and graphql-core keep for it end there (a socket lives for hours,
    and a process holds thousands), and the handler keeps its subscriber until the client
    completes it or goes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._adopted: dict[str, Subscriber] = {}

    def _adopt(self, operation_id: str) -> Callable[[Subscriber], None]:
        def adopt(subscriber: Subscriber) -> None:
            self._adopted[operation_id] = subscriber
            disconnect = self.context.disconnect
            if disconnect is not None:
                subscriber.on_end = lambda: disconnect(SlowConsumer.code)

        return adopt

    async def send_message(self, message: Any) -> None:
        if message.get("type") == "complete" and message.get("id") in self._adopted:
            return  # the operation's task ended; the subscription goes on
        await super().send_message(message)

    def forget_id(self, id: str) -> None:
        if id not in self._adopted:  # an adopted operation's id stays taken
            super().forget_id(id)

    async def cleanup_operation(self, operation_id: str) -> None:
        subscriber = self._adopted.pop(operation_id, None)
        if subscriber is not None and self.context.hub is not None:
            self.context.hub.leave(subscriber)
        await super().cleanup_operation(operation_id)

    async def handle_connection_init(self, message: Any) -> None:
        await super().handle_connection_init(message)
        # Cancelled by now; kept, it would hold its traceback's frames for the socket's hours.
        self.connection_init_timeout_task = None

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        # The operation's own task: the delivery is its alone.
        before = b'{"id":%s,"type":"next","payload":' % orjson.dumps(operation.id)
        DELIVERY.set(
            _delivery(
                self.context.request,
                before,
                operation.query,
                operation.variables,
                operation.operation_name,
                self._adopt(operation.id),
            )
        )
        await super().run_operation(operation)


class _LegacyWS(BaseGraphQLWSHandler[Context, None]):
    """The legacy graphql-ws protocol, its subscriptions delivered by the hub's feeds."""

    async def handle_async_results(
        self,
        operation_id: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, object] | None,
    ) -> None:
        before = b'{"type":"data","id":%s,"payload":' % orjson.dumps(operation_id)
        DELIVERY.set(_delivery(self.context.request, before, query, variables, operation_name))
        await super().handle_async_results(operation_id, query, operation_name, variables)


class GraphQLWebSocket(GraphQL[Context, None]):
    """Strawberry's WebSocket protocols for one schema, with Kabinet's auth and Context."""

    graphql_transport_ws_handler_class = _TransportWS
    graphql_ws_handler_class = _LegacyWS

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
