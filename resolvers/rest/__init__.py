"""The REST facade's handlers, as thin as resolvers: what a handler gets and answers.

gateway/rest.py runs every route through one pipeline (body limit, viewer, idempotency
header, the request's models, budget, error mapping) and hands the handler a `RestCall`;
the handler calls the same domain action the mutation calls and answers one of its route's
response models. The same declarations make the OpenAPI document (gateway/openapi.py), so
what the document promises is what the pipeline checks.
"""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from domains.errors import InvalidInput
from resolvers.context import Context

Kind = Literal["query", "mutation"]
M = TypeVar("M", bound=BaseModel)


def _no_nul(value: Any) -> Any:
    """PostgreSQL text cannot hold NUL, so no input may carry one to a statement (it was a
    500); refused like any other malformed field."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("text may not contain NUL (\\u0000) characters")
    return value


class Body(BaseModel):
    """A JSON request body: types as declared, no coercion ("10" is no number, 10 no
    string), so what the document says is exactly what is accepted."""

    model_config = ConfigDict(strict=True, frozen=True)

    _no_nul = field_validator("*")(_no_nul)


class Params(BaseModel):
    """Query parameters: strings on the wire, converted to the declared types; one the
    route does not declare is refused, so a misspelt name is no silent default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    _no_nul = field_validator("*")(_no_nul)


class Answer(BaseModel):
    """A response body, built by the handler and written as JSON by the pipeline."""

    model_config = ConfigDict(frozen=True)


class PageInfo(Answer):
    """Where a keyset page ends: pass `end_cursor` as `after` for the next one."""

    has_next_page: bool
    end_cursor: str | None


def parse(model: type[M], data: Any, *, json: bool = False) -> M:
    """`data` (JSON text if `json`) as `model`; anything else is BAD_USER_INPUT naming the
    first field at fault, never a 500."""
    try:
        return model.model_validate_json(data) if json else model.model_validate(data)
    except ValidationError as error:
        raise InvalidInput(_first_problem(error)) from None


def _first_problem(error: ValidationError) -> str:
    problem = error.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in problem["loc"])
    return f"'{where}': {problem['msg']}" if where else problem["msg"]


@dataclass(frozen=True, slots=True)
class Cookie:
    """A `__Host-` cookie the answer sets (Secure, HttpOnly, SameSite=Strict, path /);
    `value` None clears it."""

    name: str
    value: str | None
    max_age: int = 0


@dataclass(frozen=True, slots=True)
class RestAnswer:
    body: Answer | None  # one of the route's `answers` for `status`
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    cookies: tuple[Cookie, ...] = ()


@dataclass(frozen=True, slots=True)
class RestCall:
    context: Context  # the same context a resolver gets: db, auth, loaders, viewer, client
    # The route's `body` model, validated; None on routes without one (or a signed body).
    body: Any
    # The route's `params` model, validated from the query string; None without one.
    params: Any
    raw_body: bytes  # the body as sent (size-limited), for routes that check a signature
    path: Mapping[str, str]  # the route's path parameters
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
    method: Literal["GET", "POST", "DELETE"]
    path: str
    handler: Handler  # its docstring's first line is the operation's summary
    # Success statuses and the model each answers with (None: no body).
    answers: Mapping[int, type[Answer] | None]
    # A POST's JSON body (Content-Type: application/json), validated before the handler.
    body: type[Body] | None = None
    params: type[Params] | None = None  # the query string's model
    # The body is signed: the handler checks the signature over the raw bytes first and
    # only then parses `body` itself (with `parse`); the pipeline leaves it alone.
    signed_body: bool = False
    # A signed body's media type and the signature's security scheme, as documented.
    body_type: str = "application/json"
    signature: str = "webhookSignature"
    signed_in: bool = True  # else anyone may call it (signing in, refreshing)
    # A cookie that may carry the credential in place of the body (where it is enabled).
    cookie: str | None = None
    idempotent: bool = False  # needs an Idempotency-Key header
    # The codes of the domain errors its handler may answer with, beyond those every route
    # shares (gateway/rest.py); their statuses come from the domains' `error_status`.
    errors: tuple[str, ...] = ()
