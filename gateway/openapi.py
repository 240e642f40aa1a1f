"""The REST facade as an OpenAPI 3.1 document, made from the route table itself.

Each `RestRoute` names its body, query and answer models (pydantic), the statuses it
answers and whether it needs a bearer token, an Idempotency-Key or a signature; the
pipeline (gateway/rest.py) validates and answers with exactly those, and this module
writes them down. Nothing here is written by hand per route, so the document cannot drift
from what runs.
"""

import re
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from importlib.metadata import version
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from domains.billing.idempotency import MAX_KEY_LENGTH
from resolvers.rest import RestRoute

SCHEMAS = "#/components/schemas/"
JSON = "application/json"

DESCRIPTION = """\
The REST facade of the Kabinet gateway: the same domain actions as GraphQL (`/graphql`).

Errors answer `{"error": {"code", "message"}}`; `code` is stable, the message is for people.
Cross-site request forgery: every POST must be preflighted, as a browser only sends
JSON (`Content-Type: application/json`) or an `Authorization` header cross-site after a
CORS preflight; other POSTs are refused with 400 `CSRF_REJECTED`. A cookie that carries a
credential (the refresh token's, where `KABINET_REFRESH_COOKIE` enables it) is
`__Host-` prefixed, Secure, HttpOnly and SameSite=Strict."""

SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "an access token from POST /auth/login or POST /auth/refresh",
    },
    "webhookSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "Webhook-Signature",
        "description": 'v1=<hex HMAC-SHA256 over "<Webhook-Timestamp>.<body>">',
    },
    "smsReportSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Signature",
        "description": 'v1=<hex HMAC-SHA256 over "<X-Signature-Timestamp>.<body>">',
    },
}

# The header each signature scheme signs its timestamp in.
SIGNATURE_TIMESTAMPS = {
    "webhookSignature": "Webhook-Timestamp",
    "smsReportSignature": "X-Signature-Timestamp",
}

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}
# Headers an error answer carries, by status.
_ERROR_HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}}},
    429: {"Retry-After": {"schema": {"type": "string"}}},
}

Mode = Literal["validation", "serialization"]


def openapi_document(
    routes: Sequence[RestRoute],
    codes: Sequence[tuple[str, ...]],
    status: Mapping[str, int],
) -> dict[str, Any]:
    """The document of `routes`; `codes[i]` are the error codes `routes[i]` may answer,
    `status` the HTTP status of each code."""
    models = _models(routes)
    refs, top = models_json_schema(
        [(model, mode) for model, mode in models], ref_template=SCHEMAS + "{model}"
    )
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    paths: dict[str, dict[str, Any]] = {}
    for route, route_codes in zip(routes, codes, strict=True):
        params = (
            _query_parameters(refs[(route.params, "validation")], schemas) if route.params else []
        )
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(
            route, refs, params, route_codes, status
        )
    schemas["Error"] = ERROR
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Kabinet REST",
            "version": version("kabinet"),
            "description": DESCRIPTION,
        },
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": _security_schemes(routes)},
    }


def _models(routes: Sequence[RestRoute]) -> list[tuple[type[BaseModel], Mode]]:
    """Request models as they are validated, answers as they are written, each once."""
    found: list[tuple[type[BaseModel], Mode]] = []
    for route in routes:
        for model, mode in (
            (route.body, "validation"),
            (route.params, "validation"),
            *((answer, "serialization") for answer in route.answers.values()),
        ):
            if model is not None and (model, mode) not in found:
                found.append((model, mode))  # type: ignore[arg-type]
    return found


def _operation(
    route: RestRoute,
    refs: Mapping[tuple[type[BaseModel], Mode], Any],
    query: list[dict[str, Any]],
    codes: tuple[str, ...],
    status: Mapping[str, int],
) -> dict[str, Any]:
    summary, _, description = (route.handler.__doc__ or "").strip().partition("\n")
    operation: dict[str, Any] = {
        "operationId": route.handler.__name__,
        "summary": summary.strip(),
        "parameters": [*_path_parameters(route.path), *_header_parameters(route), *query],
        "responses": {
            **{
                str(code): _answer(code, refs[(model, "serialization")] if model else None)
                for code, model in route.answers.items()
            },
            **_errors(codes, status),
        },
        "security": _security(route),
    }
    if description.strip():
        operation["description"] = " ".join(description.split())
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {route.body_type: {"schema": refs[(route.body, "validation")]}},
        }
    return operation


def _answer(code: int, schema: Any | None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": HTTPStatus(code).phrase}
    if schema is not None:
        answer["content"] = {JSON: {"schema": schema}}
    return answer


def _errors(codes: tuple[str, ...], status: Mapping[str, int]) -> dict[str, Any]:
    """One response per status, its body the error whose `code` is one of that status's."""
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(status.get(code, 400), []).append(code)
    responses = {}
    for code, names in sorted(by_status.items()):
        schema = {
            "allOf": [{"$ref": SCHEMAS + "Error"}],
            "properties": {"error": {"properties": {"code": {"enum": names}}}},
        }
        response: dict[str, Any] = {
            "description": f"{HTTPStatus(code).phrase}: {', '.join(names)}",
            "content": {JSON: {"schema": schema}},
        }
        if code in _ERROR_HEADERS:
            response["headers"] = _ERROR_HEADERS[code]
        responses[str(code)] = response
    return responses


def _security_schemes(routes: Sequence[RestRoute]) -> dict[str, Any]:
    """The shared schemes, and each cookie a route takes its credential from, by its name."""
    cookies = {
        route.cookie: {
            "type": "apiKey",
            "in": "cookie",
            "name": route.cookie,
            "description": "set by sign-in where KABINET_REFRESH_COOKIE is on",
        }
        for route in routes
        if route.cookie is not None
    }
    return {**SECURITY_SCHEMES, **cookies}


def _security(route: RestRoute) -> list[dict[str, list[str]]]:
    if route.signed_in:
        return [{"bearer": []}]
    if route.signed_body:
        return [{route.signature: []}]
    if route.cookie is not None:
        return [{}, {route.cookie: []}]
    return []


def _path_parameters(path: str) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", path)
    ]


def _header_parameters(route: RestRoute) -> list[dict[str, Any]]:
    headers = []
    if route.idempotent:
        headers.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": True,
                "description": "a key (e.g. a UUID) that makes retries of this request safe",
                "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
            }
        )
    if route.signed_body:
        headers.append(
            {
                "name": SIGNATURE_TIMESTAMPS[route.signature],
                "in": "header",
                "required": True,
                "description": "Unix seconds; the signature covers it",
                "schema": {"type": "string"},
            }
        )
    return headers


def _query_parameters(ref: Mapping[str, str], schemas: dict[str, Any]) -> list[dict[str, Any]]:
    """The query model's fields as parameters (lists comma-separated: `status=a,b`); the
    model itself is no body, so it leaves the components."""
    model = schemas.pop(ref["$ref"].removeprefix(SCHEMAS))
    required = set(model.get("required", ()))
    parameters = []
    for name, field in model["properties"].items():
        schema = _without_null(field)
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": schema,
        }
        if "description" in field:
            parameter["description"] = field["description"]
        if schema.get("type") == "array":
            parameter |= {"style": "form", "explode": False}
        parameters.append(parameter)
    return parameters


def _without_null(field: Mapping[str, Any]) -> dict[str, Any]:
    """An optional field's schema without its `null` branch: a query string has no null,
    only an absent parameter."""
    kept = {key: value for key, value in field.items() if key not in ("default", "title")}
    kept.pop("description", None)
    branches = [branch for branch in kept.pop("anyOf", []) if branch != {"type": "null"}]
    if len(branches) == 1:
        kept |= branches[0]
    elif branches:
        kept["anyOf"] = branches
    return kept
