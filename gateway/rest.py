"""The REST facade: every domain's routes through one pipeline, onto the same domain actions.

Each route runs the same steps once, in order: the viewer (401 before anything else is
read), the Idempotency-Key header where the route needs one, the body (size limit, then
its model), the query string's model, then the handler, which spends the caller's budget
as GraphQL would, and answers one of its declared models. A domain error becomes
`{"error": {code, message}}` with the status its domain declares. The same route table
makes `GET /openapi.json` (gateway/openapi.py), so the document is what runs.
"""

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from domains.audit.log import staff_action
from domains.errors import DomainError, InvalidInput, RateLimited
from domains.identity.viewer import require_viewer
from domains.limits import Decision, LimiterUnavailable
from gateway.csrf import CSRF_REJECTED
from gateway.errors import BadRequest, rest_error_response
from gateway.graphql_http import read_body
from gateway.openapi import openapi_document
from gateway.ratelimit import (
    LIMITER_DOWN_MESSAGE,
    SERVICE_UNAVAILABLE,
    OverBudget,
    rate_limit_headers,
)
from gateway.services import Services
from resolvers.context import Context
from resolvers.rest import Kind, RestAnswer, RestCall, RestRoute, parse
from schema.plugin import Domain

# Statuses every route shares; a domain adds its own codes' (Domain.error_status).
_STATUS = {
    "BAD_USER_INPUT": 400,
    CSRF_REJECTED: 400,
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "PAYLOAD_TOO_LARGE": 413,
    "RATE_LIMITED": 429,
    SERVICE_UNAVAILABLE: 503,
}

MakeContext = Callable[[Request], Awaitable[Context]]
Endpoint = Callable[[Request], Awaitable[Response]]


def rest_routes(
    domains: Iterable[Domain], services: Services, make_context: MakeContext
) -> list[Route]:
    """The Starlette routes of every domain's REST handlers, and `GET /openapi.json`
    describing them."""
    domains = list(domains)
    status = _statuses(domains)
    document = rest_document(domains)

    async def openapi(_request: Request) -> Response:
        return JSONResponse(document, headers={"Cache-Control": "public, max-age=300"})

    # One route per path, whatever its methods: a request with another method is answered
    # 405 with every method the path has in `Allow`.
    by_path: dict[str, dict[str, Endpoint]] = {}
    for domain in domains:
        for route in domain.rest:
            endpoint = _endpoint(route, services, make_context, status)
            by_path.setdefault(route.path, {})[route.method] = endpoint
    return [
        *(
            Route(path, _by_method(endpoints), methods=list(endpoints))
            for path, endpoints in by_path.items()
        ),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]


def _by_method(endpoints: Mapping[str, Endpoint]) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        # Starlette answers HEAD where GET is served, with GET's endpoint.
        return await endpoints["GET" if request.method == "HEAD" else request.method](request)

    return endpoint


def rest_document(domains: Iterable[Domain]) -> dict[str, Any]:
    """The OpenAPI document of the domains' REST routes, as `GET /openapi.json` serves it."""
    domains = list(domains)
    table = [route for domain in domains for route in domain.rest]
    return openapi_document(table, [answered_codes(route) for route in table], _statuses(domains))


def _statuses(domains: list[Domain]) -> dict[str, int]:
    status = dict(_STATUS)
    for domain in domains:
        status.update(domain.error_status)
    return status


def answered_codes(route: RestRoute) -> tuple[str, ...]:
    """The error codes `route` may answer: its handler's, and those of the pipeline and the
    middleware in front of it (a bad token is refused on every route)."""
    codes = ["UNAUTHENTICATED", "RATE_LIMITED", SERVICE_UNAVAILABLE]
    if route.body or route.params or route.idempotent:
        codes.append("BAD_USER_INPUT")
    if route.method == "POST":
        codes += [CSRF_REJECTED, "PAYLOAD_TOO_LARGE"]
    return (*codes, *(code for code in route.errors if code not in codes))


def _endpoint(
    route: RestRoute, services: Services, make_context: MakeContext, status: Mapping[str, int]
) -> Endpoint:
    settings = services.settings

    async def endpoint(request: Request) -> Response:
        decisions: list[Decision] = []
        try:
            viewer = request.state.viewer
            if route.signed_in:
                require_viewer(viewer)
            key = request.headers.get("idempotency-key")
            if route.idempotent and not key:
                raise InvalidInput(
                    "send an Idempotency-Key header (e.g. a UUID) with every payment"
                )
            raw = (
                await read_body(request, settings.max_body_bytes) if route.method == "POST" else b""
            )
            body = _body(route, request, raw)
            params = parse(route.params, dict(request.query_params)) if route.params else None

            async def charge(kind: Kind, cost: int) -> None:
                decisions.append(await _spend(services, request, kind, cost))

            call = RestCall(
                context=await make_context(request),
                body=body,
                params=params,
                raw_body=raw,
                path=request.path_params,
                headers=request.headers,
                cookies=request.cookies,
                idempotency_key=key,
                charge=charge,
                refresh_cookie=settings.refresh_cookie,
            )
            context = call.context
            async with staff_action(
                context.db,
                viewer if route.method != "GET" else None,
                f"{route.method} {route.path}",
                {"path": dict(request.path_params), "params": params, "body": body},
                client_address=context.client_ip,
                user_agent=request.headers.get("user-agent"),
                clock=context.clock,
            ):
                answer = await route.handler(call)
        except BadRequest as refused:
            return rest_error_response(refused.status, refused.code, refused.message)
        except DomainError as error:
            return _error(error, status)
        return _response(route, answer, decisions)

    return endpoint


def _body(route: RestRoute, request: Request, raw: bytes) -> object:
    """The route's body model from the JSON sent; a signed body is the handler's to read."""
    if route.body is None or route.signed_body:
        return None
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise InvalidInput("send a JSON body with Content-Type: application/json")
    return parse(route.body, raw, json=True)


async def _spend(services: Services, request: Request, kind: Kind, cost: int) -> Decision:
    """Charges the caller's budget as GraphQL would; over it, raises OverBudget (429), and
    with the limiter down (policy "closed") a SERVICE_UNAVAILABLE error (503)."""
    viewer = request.state.viewer
    try:
        decision = await services.budgets.charge(
            kind,
            cost,
            user_id=viewer.user_id if viewer is not None else None,
            ip=request.client.host if request.client is not None else None,
        )
    except LimiterUnavailable:
        raise DomainError(LIMITER_DOWN_MESSAGE, code=SERVICE_UNAVAILABLE) from None
    if not decision.allowed:
        raise OverBudget(decision)
    return decision


def _error(error: DomainError, status: Mapping[str, int]) -> Response:
    code = status.get(error.code, 400)
    headers = {"WWW-Authenticate": "Bearer"} if code == 401 else None
    if isinstance(error, OverBudget):
        headers = rate_limit_headers(error.decision)
    elif isinstance(error, RateLimited):
        headers = {"Retry-After": str(error.retry_after)}
    return rest_error_response(code, error.code, error.message, headers)


def _response(route: RestRoute, answer: RestAnswer, decisions: list[Decision]) -> Response:
    """The answer as the document describes it; one it does not describe is a bug (500)."""
    if answer.status not in route.answers or type(answer.body) is not (
        route.answers[answer.status] or type(None)
    ):
        raise TypeError(f"{route.path} answered {answer.status} with an undeclared body")
    headers = {**(rate_limit_headers(decisions[-1]) if decisions else {}), **answer.headers}
    response: Response = (
        Response(status_code=answer.status, headers=headers)
        if answer.body is None
        else Response(
            answer.body.model_dump_json(),
            status_code=answer.status,
            headers=headers,
            media_type="application/json",
        )
    )
    for cookie in answer.cookies:
        if cookie.value is None:
            response.delete_cookie(
                cookie.name, path="/", secure=True, httponly=True, samesite="strict"
            )
        else:
            response.set_cookie(
                cookie.name,
                cookie.value,
                max_age=cookie.max_age,
                path="/",
                secure=True,
                httponly=True,
                samesite="strict",
            )
    return response
