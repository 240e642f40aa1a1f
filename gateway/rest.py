"""The REST facade: every domain's routes through one pipeline, onto the same domain actions.

Each route runs the same steps once, in order: the viewer (401 before anything else is
read), the Idempotency-Key header where the route needs one, the body (size limit, then a
JSON object), then the handler, which spends the caller's budget as GraphQL would. A
domain error becomes `{"error": {code, message}}` with the status its domain declares.
"""

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from domains.errors import DomainError, InvalidInput, RateLimited
from domains.identity.viewer import require_viewer
from domains.limits import Decision, LimiterUnavailable
from gateway.errors import BadRequest, rest_error_response
from gateway.graphql_http import read_body
from gateway.ratelimit import (
    LIMITER_DOWN_MESSAGE,
    SERVICE_UNAVAILABLE,
    OverBudget,
    rate_limit_headers,
)
from gateway.services import Services
from resolvers.context import Context
from resolvers.rest import Kind, RestAnswer, RestCall, RestRoute
from schema.plugin import Domain

# Statuses every route shares; a domain adds its own codes' (Domain.error_status).
_STATUS = {
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "RATE_LIMITED": 429,
    SERVICE_UNAVAILABLE: 503,
}

MakeContext = Callable[[Request], Awaitable[Context]]


def rest_routes(
    domains: Iterable[Domain], services: Services, make_context: MakeContext
) -> list[Route]:
    """The Starlette routes of every domain's REST handlers."""
    domains = list(domains)
    status = dict(_STATUS)
    for domain in domains:
        status.update(domain.error_status)
    return [
        Route(route.path, _endpoint(route, services, make_context, status), methods=[route.method])
        for domain in domains
        for route in domain.rest
    ]


def _endpoint(
    route: RestRoute, services: Services, make_context: MakeContext, status: Mapping[str, int]
) -> Callable[[Request], Awaitable[Response]]:
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
            body = _json_object(request, raw) if route.method == "POST" and route.json_body else {}

            async def charge(kind: Kind, cost: int) -> None:
                decisions.append(await _spend(services, request, kind, cost))

            call = RestCall(
                context=await make_context(request),
                body=body,
                raw_body=raw,
                path=request.path_params,
                query=request.query_params,
                headers=request.headers,
                cookies=request.cookies,
                idempotency_key=key,
                charge=charge,
                refresh_cookie=settings.refresh_cookie,
            )
            answer = await route.handler(call)
        except BadRequest as refused:
            return rest_error_response(refused.status, refused.code, refused.message)
        except DomainError as error:
            return _error(error, status)
        return _response(answer, decisions)

    return endpoint


def _json_object(request: Request, raw: bytes) -> dict[str, Any]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise InvalidInput("send a JSON body with Content-Type: application/json")
    try:
        body = json.loads(raw)
    except ValueError:
        raise InvalidInput("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidInput("request body must be a JSON object")
    return body


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


def _response(answer: RestAnswer, decisions: list[Decision]) -> Response:
    headers = {**(rate_limit_headers(decisions[-1]) if decisions else {}), **answer.headers}
    response: Response = (
        Response(status_code=answer.status, headers=headers)
        if answer.body is None
        else JSONResponse(answer.body, status_code=answer.status, headers=headers)
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
