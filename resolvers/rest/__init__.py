"""The REST facade's handlers, as thin as resolvers: what a handler gets and answers.

gateway/rest.py runs every route through one pipeline (body limit and JSON, viewer,
idempotency header, budget, error mapping) and hands the handler a `RestCall`; the handler
calls the same domain action the mutation calls and answers a JSON-able body.
"""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from resolvers.context import Context

Kind = Literal["query", "mutation"]


@dataclass(frozen=True, slots=True)
class Cookie:
    """A `__Host-` cookie the answer sets (Secure, HttpOnly, SameSite=Strict, path /);
    `value` None clears it."""

    name: str
    value: str | None
    max_age: int = 0


@dataclass(frozen=True, slots=True)
class RestAnswer:
    body: Any
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    cookies: tuple[Cookie, ...] = ()


@dataclass(frozen=True, slots=True)
class RestCall:
    context: Context  # the same context a resolver gets: db, auth, loaders, viewer, client
    body: Mapping[str, Any]  # the JSON object sent; empty for GET and raw-body routes
    raw_body: bytes  # the body as sent (size-limited), for routes that check a signature
    path: Mapping[str, str]  # the route's path parameters
    query: Mapping[str, str]
    headers: Mapping[str, str]
    cookies: Mapping[str, str]
    # The Idempotency-Key header; the pipeline requires it on routes declared idempotent.
    idempotency_key: str | None
    # Spends the caller's budget as GraphQL would (over it: 429, and nothing is done).
    charge: Callable[[Kind, int], Awaitable[None]]
    # Whether the refresh token also travels in a cookie (KABINET_REFRESH_COOKIE).
    refresh_cookie: bool = False


Handler = Callable[[RestCall], Awaitable[RestAnswer]]


@dataclass(frozen=True, slots=True)
class RestRoute:
    method: Literal["GET", "POST"]
    path: str
    handler: Handler
    signed_in: bool = True  # else anyone may call it (signing in, refreshing)
    idempotent: bool = False  # needs an Idempotency-Key header
    # A POST's body must be a JSON object: also the CSRF guard of the cookie routes, since a
    # cross-site form cannot send JSON without a CORS preflight. Else only `raw_body`.
    json_body: bool = True
