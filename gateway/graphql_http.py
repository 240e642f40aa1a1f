"""GraphQL over HTTP, per the GraphQL-over-HTTP spec: GET and POST, negotiation, status codes."""

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

import orjson
from graphql import GraphQLError, parse, validate
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send
from strawberry.exceptions import MissingQueryError
from strawberry.schema import BaseSchema
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.execution import ExecutionResult, PreExecutionError
from strawberry.types.graphql import OperationType

from domains.errors import Unauthenticated
from domains.identity.tokens import AccessClaims, TokenService
from domains.limits import Decision
from gateway.csrf import CSRF_REJECTED, preflighted
from gateway.errors import BadRequest, graphql_error_body, graphql_error_response
from gateway.persisted import PersistedQueries
from gateway.ratelimit import SERVICE_UNAVAILABLE, rate_limit_headers
from gateway.ws import Ending, LiveConnections
from resolvers.context import Context
from resolvers.live import DELIVERY, Delivery

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
JSON = "application/json"
EVENT_STREAM = "text/event-stream"
_QUERY_ONLY = frozenset({OperationType.QUERY})
_QUERY_AND_MUTATION = frozenset({OperationType.QUERY, OperationType.MUTATION})
# Refusals that are the server's doing, not the request's: this status whatever the media type.
_SERVER_REFUSALS = {SERVICE_UNAVAILABLE: 503}
_GET_WITHOUT_PREFLIGHT = (
    "a GET could be a cross-site request forgery: send an Apollo-Require-Preflight header "
    "(or Content-Type: application/json), or POST"
)


def negotiate(accept: str | None) -> str:
    """The response media type; clients that name neither JSON type are refused (406)."""
    if not accept:
        return JSON
    ranges = _media_ranges(accept)
    if GRAPHQL_RESPONSE_JSON in ranges:
        return GRAPHQL_RESPONSE_JSON
    if JSON in ranges or "application/*" in ranges or "*/*" in ranges:
        return JSON
    raise BadRequest(406, "NOT_ACCEPTABLE", f"respond with {GRAPHQL_RESPONSE_JSON} or {JSON}")


def _media_ranges(accept: str) -> list[str]:
    """The media types an Accept header names, without their parameters."""
    return [part.split(";")[0].strip().lower() for part in accept.split(",")]


def _wants_event_stream(request: Request) -> bool:
    return EVENT_STREAM in _media_ranges(request.headers.get("accept", ""))


def _prefers_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "query" not in request.query_params


def _operation(params: Any) -> dict[str, Any]:
    """Checks one request's parameters against the spec's shapes."""
    if not isinstance(params, dict):
        raise BadRequest(400, "BAD_REQUEST", "a GraphQL request must be a JSON object")
    query = params.get("query")
    if query is not None and not isinstance(query, str):
        raise BadRequest(400, "BAD_REQUEST", "'query' must be a string")
    variables = params.get("variables")
    if variables is not None and not isinstance(variables, dict):
        raise BadRequest(400, "BAD_REQUEST", "'variables' must be an object")
    name = params.get("operationName")
    if name is not None and not isinstance(name, str):
        raise BadRequest(400, "BAD_REQUEST", "'operationName' must be a string")
    extensions = params.get("extensions")
    if extensions is not None and not isinstance(extensions, dict):
        raise BadRequest(400, "BAD_REQUEST", "'extensions' must be an object")
    return {"query": query, "variables": variables, "name": name, "extensions": extensions}


def _from_query_string(request: Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query_params)
    for key in ("variables", "extensions"):
        if key in params:
            try:
                params[key] = orjson.loads(params[key])
            except ValueError:
                raise BadRequest(400, "BAD_REQUEST", f"'{key}' is not valid JSON") from None
    return _operation(params)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it is known to exceed `limit` (before reading it all)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, "PAYLOAD_TOO_LARGE", f"request body over {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, "PAYLOAD_TOO_LARGE", f"request body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _from_body(
    request: Request, max_batch: int, max_bytes: int
) -> list[dict[str, Any]] | dict[str, Any]:
    """One operation, or a batch of up to `max_batch` (0: batching is off)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != JSON:
        raise BadRequest(415, "UNSUPPORTED_MEDIA_TYPE", f"send the request as {JSON}")
    body = await read_body(request, max_bytes)
    try:
        payload = orjson.loads(body)
    except ValueError:
        raise BadRequest(400, "BAD_REQUEST", "request body is not valid JSON") from None
    if isinstance(payload, list):
        if max_batch == 0:
            raise BadRequest(
                400, "BATCHING_DISABLED", "batching is off: send one operation per request"
            )
        if not payload or len(payload) > max_batch:
            raise BadRequest(400, "BAD_REQUEST", f"a batch holds 1 to {max_batch} operations")
        return [_operation(item) for item in payload]
    return _operation(payload)


def _is_request_error(result: ExecutionResult) -> bool:
    """Failed before execution began (parse, validation, variable coercion): errors lack a path."""
    if isinstance(result, PreExecutionError):
        return True
    return (
        result.data is None and bool(result.errors) and all(e.path is None for e in result.errors)
    )


def _status(result: ExecutionResult, media_type: str) -> int:
    """200, or for a request error a 4xx (the spec, with graphql-response+json); 503 when
    the server refused the operation or could not serve a field of it (no database
    connection to be had), so a client or a load tool sees a failure to retry, not a 200."""
    for error in result.errors or ():
        status = _SERVER_REFUSALS.get((error.extensions or {}).get("code"))
        if status is not None:
            return status
    if not _is_request_error(result):
        return 200
    return 400 if media_type == GRAPHQL_RESPONSE_JSON else 200


def _throttled(result: ExecutionResult) -> int | None:
    """Seconds to wait, when a field was refused for going over a budget."""
    for error in result.errors or ():
        extensions = error.extensions or {}
        if extensions.get("code") == "RATE_LIMITED" and "retryAfter" in extensions:
            return int(extensions["retryAfter"])
    return None


def _serialize(result: ExecutionResult) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if result.errors:
        body["errors"] = [error.formatted for error in result.errors]
    # A request error has no "data" entry; an executed operation always has one.
    if not _is_request_error(result):
        body["data"] = result.data
    if result.extensions:
        body["extensions"] = result.extensions
    return body


class GraphQLEndpoint:
    """An ASGI app serving one schema over HTTP."""

    def __init__(
        self,
        schema: BaseSchema,
        make_context: Callable[[Request], Awaitable[Context]],
        *,
        graphiql_page: str | None,
        persisted: PersistedQueries,
        tokens: TokenService,
        connections: LiveConnections,
        max_batch: int,
        max_body_bytes: int,
        max_tokens: int,
        get_needs_preflight: bool,
    ) -> None:
        self.schema = schema
        self.make_context = make_context
        self.graphiql_page = graphiql_page
        self.persisted = persisted
        self.tokens = tokens
        self.connections = connections
        self.max_batch = max_batch
        self.max_body_bytes = max_body_bytes
        self.max_tokens = max_tokens
        self.get_needs_preflight = get_needs_preflight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await self._handle(request)
        except BadRequest as error:
            response = graphql_error_response(
                error.status, error.code, error.message, error.headers
            )
        await response(scope, receive, send)

    async def _handle(self, request: Request) -> Response:
        if request.method == "GET":
            if self.graphiql_page is not None and _prefers_html(request):
                return HTMLResponse(self.graphiql_page)
            media_type = negotiate(request.headers.get("accept"))
            if self.get_needs_preflight and not preflighted(request.headers):
                raise BadRequest(400, CSRF_REJECTED, _GET_WITHOUT_PREFLIGHT)
            payload: Any = _from_query_string(request)
            allowed = _QUERY_ONLY
        elif request.method == "POST" and _wants_event_stream(request):
            operation = await _from_body(request, 1, self.max_body_bytes)
            if isinstance(operation, list):
                raise BadRequest(400, "BAD_REQUEST", "an event stream carries one operation")
            return await self._event_stream(request, operation)
        elif request.method == "POST":
            media_type = negotiate(request.headers.get("accept"))
            payload = await _from_body(request, self.max_batch, self.max_body_bytes)
            allowed = _QUERY_AND_MUTATION
        else:
            raise BadRequest(405, "METHOD_NOT_ALLOWED", "use GET or POST", {"Allow": "GET, POST"})

        context = await self.make_context(request)
        decisions: list[Decision] = []
        if isinstance(payload, list):
            body: Any = []
            for operation in payload:
                try:
                    result = await self._execute(operation, context, allowed)
                except BadRequest as error:  # one bad operation does not sink the batch
                    body.append(graphql_error_body(error.code, error.message))
                    continue
                body.append(_serialize(result))
                decisions += _take_decision(context)
            status = 200
        else:
            result = await self._execute(payload, context, allowed)
            body = _serialize(result)
            decisions += _take_decision(context)
            status = _status(result, media_type)
        headers: dict[str, str] = {}
        if decisions:
            tightest = min(decisions, key=lambda d: (d.allowed, d.remaining))
            headers = rate_limit_headers(tightest)
            # A batch answers 200: some of its operations may have run, and a client
            # retrying the whole batch on 429 would run them twice.
            if not tightest.allowed and not isinstance(payload, list):
                status = 429
        if not isinstance(payload, list) and (retry := _throttled(result)) is not None:
            # A throttled field (login attempts) refuses the request as a whole would.
            status, headers["Retry-After"] = 429, str(retry)
        return Response(
            orjson.dumps(body),
            status_code=status,
            media_type=media_type,
            headers=headers,
        )

    async def _event_stream(self, request: Request, operation: dict[str, Any]) -> Response:
        """A subscription over Server-Sent Events (graphql-sse, distinct connections mode):
        one `next` event per result, then `complete`. The stream ends when the client leaves,
        or, as a websocket would be closed, with an error once the viewer's session ended or
        their access token expired."""
        query = await self.persisted.resolve(
            operation["query"], operation["extensions"], self._operation_is_valid
        )
        context = await self.make_context(request)
        claims = self._claims(request)
        results = await self.schema.stream(
            query,
            variable_values=operation["variables"],
            context_value=context,
            operation_name=operation["name"],
            operation_extensions=operation["extensions"],
            allowed_operation_types=(OperationType.SUBSCRIPTION,),
        )
        ended: asyncio.Future[Ending] = asyncio.get_running_loop().create_future()
        # What the subscription's feed delivers, one body at a time as the client reads.
        bodies: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1)

        def end(ending: Ending) -> None:
            if not ended.done():
                ended.set_result(ending)

        async def events() -> AsyncIterator[bytes]:
            DELIVERY.set(
                Delivery(query, operation["variables"], operation["name"], send=bodies.put)
            )
            if claims is not None:
                self.connections.add(request.scope, claims, end, is_websocket=False)
            try:
                async with aclosing(results):
                    async for body in _until(results, bodies, ended):
                        yield b"event: next\ndata: " + body + b"\n\n"
                yield b"event: complete\ndata:\n\n"
            finally:
                self.connections.discard(request.scope)

        return StreamingResponse(
            events(),
            media_type=EVENT_STREAM,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    def _operation_is_valid(self, query: str) -> bool:
        """Whether the text parses and validates against this schema (what may be kept as a
        persisted query); within the token limit, so a registration costs no more than a
        request. Only new registrations pay it."""
        try:
            document = parse(query, max_tokens=self.max_tokens)
        except GraphQLError:
            return False
        return not validate(self.schema._schema, document)  # type: ignore[attr-defined]

    def _claims(self, request: Request) -> AccessClaims | None:
        """The signed-in viewer's token claims (BearerAuth checked the token); None when
        anonymous."""
        if request.state.viewer is None:
            return None
        token = request.headers["authorization"].partition(" ")[2].strip()
        try:
            return self.tokens.verify_access_token(token)
        except Unauthenticated as error:  # expired since BearerAuth looked at it
            raise BadRequest(401, error.code, error.message) from None

    async def _execute(
        self, operation: dict[str, Any], context: Context, allowed: frozenset[OperationType]
    ) -> ExecutionResult:
        query = await self.persisted.resolve(
            operation["query"], operation["extensions"], self._operation_is_valid
        )
        try:
            return await self.schema.execute(
                query,
                variable_values=operation["variables"],
                context_value=context,
                operation_name=operation["name"],
                allowed_operation_types=allowed,
                operation_extensions=operation["extensions"],
            )
        except InvalidOperationTypeError:
            raise BadRequest(
                405, "METHOD_NOT_ALLOWED", "mutations must be sent with POST", {"Allow": "POST"}
            ) from None
        except CannotGetOperationTypeError as error:
            raise BadRequest(400, "BAD_REQUEST", error.as_http_error_reason()) from None
        except MissingQueryError:
            raise BadRequest(400, "BAD_REQUEST", "no GraphQL query found") from None


async def _until(
    results: AsyncGenerator[ExecutionResult, None],
    bodies: "asyncio.Queue[bytes]",
    ended: "asyncio.Future[Ending]",
) -> AsyncIterator[bytes]:
    """The stream's bodies: what its feed delivers, and its own results (a refusal, an
    error it ends with), until `ended` says why the server ends it: then an error with that
    code, and no more."""
    step = asyncio.ensure_future(anext(results))
    try:
        while True:
            taking = asyncio.ensure_future(bodies.get())
            try:
                await asyncio.wait((step, taking, ended), return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not taking.done():
                    taking.cancel()
            if taking.done() and not taking.cancelled():
                yield taking.result()
                continue
            if ended.done():
                ending = ended.result()
                yield orjson.dumps(graphql_error_body(ending.name, ending.message))
                return
            try:
                result = step.result()
            except StopAsyncIteration:
                return
            yield orjson.dumps(_serialize(result))
            step = asyncio.ensure_future(anext(results))
    finally:
        if not step.done():
            step.cancel()
            await asyncio.wait((step,))


def _take_decision(context: Context) -> list[Decision]:
    """The rate limiter's answer for the operation just run, cleared for the next one."""
    decision, context.rate_limit = context.rate_limit, None
    return [decision] if decision is not None else []
