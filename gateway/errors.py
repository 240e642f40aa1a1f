"""JSON error bodies: GraphQL-shaped on GraphQL endpoints, `{"error": ...}` on REST routes."""

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse


def graphql_error_body(code: str, message: str) -> dict[str, Any]:
    return {"errors": [{"message": message, "extensions": {"code": code}}]}


def graphql_error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(graphql_error_body(code, message), status_code=status, headers=headers)


def rest_error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def is_graphql_path(path: str) -> bool:
    return path == "/graphql" or path.startswith("/subgraphs/")


def error_response(
    path: str, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The error in the shape the route at `path` answers in, for middleware that serves all."""
    respond = graphql_error_response if is_graphql_path(path) else rest_error_response
    return respond(status, code, message, headers)


class BadRequest(Exception):
    """A request refused at the HTTP level: status, stable code, message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers
