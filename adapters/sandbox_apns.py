"""A local sandbox of APNs' provider API (adapters/apns_channel.py speaks it), for the
tests, which serve it over TLS and HTTP/2 (tests/http2_server.py), as APNs is served.

`POST /3/device/{token}` answers as APNs does, in this order: a request not over HTTP/2 is
refused; the provider token must be an ES256 JWT signed by the team's key (`kid` its key
id, `iss` the team id): 403 `MissingProviderToken`, `InvalidProviderToken`, or
`ExpiredProviderToken` when its `iat` is an hour old; a new token sooner than 20 minutes
after the previous one is 429 `TooManyProviderTokenUpdates`. Then 400 `MissingTopic` or
`TopicDisallowed` (not one of the team's bundle ids), `InvalidPushType`, `BadPriority`,
`BadExpirationDate`, `BadDeviceToken` (not 64 hex digits), 413 `PayloadTooLarge` (over
4096 bytes), 400 `PayloadEmpty` or `BadMessage` (no `aps` dictionary); 410 `Unregistered` (with the
`timestamp` the token stopped being valid) for tokens the tests marked so; 429
`TooManyRequests` while `throttled`. A message taken answers 200 with its `apns-id`.
Errors are `{"reason": "..."}` JSON with the `apns-id` header, as APNs answers them.
"""

import json
import string
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from domains.clock import SYSTEM_CLOCK, Clock

MAX_PAYLOAD = 4096
TOKEN_LIFETIME = timedelta(hours=1)
TOKEN_UPDATE_INTERVAL = timedelta(minutes=20)
PUSH_TYPES = frozenset(
    {"alert", "background", "voip", "complication", "fileprovider", "mdm", "liveactivity"}
)


@dataclass
class Delivered:
    device: str
    headers: dict[str, str]
    payload: dict[str, Any]
    http_version: str


@dataclass
class SandboxApns:
    team_id: str
    key_id: str
    public_key: ECKey
    topics: frozenset[str]
    clock: Clock
    received: list[Delivered] = field(default_factory=list)
    # Every provider token accepted, in order, with when it was issued.
    provider_tokens: list[tuple[str, datetime]] = field(default_factory=list)
    unregistered: dict[str, datetime] = field(default_factory=dict)
    throttled: bool = False


def create_sandbox_apns_app(
    *,
    team_id: str,
    key_id: str,
    public_key_pem: str,
    topics: frozenset[str],
    clock: Clock = SYSTEM_CLOCK,
) -> Starlette:
    """The sandbox's state is `app.state.sandbox` (a `SandboxApns`)."""
    state = SandboxApns(team_id, key_id, ECKey.import_key(public_key_pem), topics, clock)

    async def push(request: Request) -> Response:
        apns_id = request.headers.get("apns-id") or str(uuid.uuid4())
        # Read first, whatever the answer: hypercorn's HTTP/2 stream breaks the connection
        # when DATA frames arrive for a stream already answered.
        body = await request.body()

        def refuse(status: int, reason: str, **extra: Any) -> Response:
            return JSONResponse(
                {"reason": reason, **extra}, status_code=status, headers={"apns-id": apns_id}
            )

        http_version = request.scope.get("http_version", "")
        if http_version != "2":
            return refuse(400, "BadMessage")
        authorization = request.headers.get("authorization", "")
        if not authorization.lower().startswith("bearer "):
            return refuse(403, "MissingProviderToken")
        problem = _provider_token_problem(state, authorization[len("bearer ") :])
        if problem is not None:
            return refuse(*problem)
        topic = request.headers.get("apns-topic")
        if not topic:
            return refuse(400, "MissingTopic")
        if topic not in state.topics:
            return refuse(400, "TopicDisallowed")
        if request.headers.get("apns-push-type") not in PUSH_TYPES:
            return refuse(400, "InvalidPushType")
        if request.headers.get("apns-priority", "10") not in ("5", "10"):
            return refuse(400, "BadPriority")
        if not request.headers.get("apns-expiration", "0").isdigit():
            return refuse(400, "BadExpirationDate")
        device = request.path_params["device"]
        if len(device) != 64 or not set(device) <= set(string.hexdigits):
            return refuse(400, "BadDeviceToken")
        if len(body) > MAX_PAYLOAD:
            return refuse(413, "PayloadTooLarge")
        if not body:
            return refuse(400, "PayloadEmpty")
        try:
            payload = json.loads(body)
            if not isinstance(payload, dict) or not isinstance(payload.get("aps"), dict):
                raise ValueError("no aps dictionary")
        except ValueError:
            return refuse(400, "BadMessage")
        if device in state.unregistered:
            since = int(state.unregistered[device].timestamp() * 1000)
            return refuse(410, "Unregistered", timestamp=since)
        if state.throttled:
            return refuse(429, "TooManyRequests")
        state.received.append(Delivered(device, dict(request.headers), payload, http_version))
        return Response(status_code=200, headers={"apns-id": apns_id})

    app = Starlette(routes=[Route("/3/device/{device}", push, methods=["POST"])])
    app.state.sandbox = state
    return app


def _provider_token_problem(state: SandboxApns, value: str) -> tuple[int, str] | None:
    try:
        token = jwt.decode(value, state.public_key, algorithms=["ES256"])
        issued_at = datetime.fromtimestamp(int(token.claims["iat"]), state.clock.now().tzinfo)
    except (JoseError, ValueError, KeyError, TypeError, OverflowError):
        return 403, "InvalidProviderToken"
    if token.header.get("kid") != state.key_id or token.claims.get("iss") != state.team_id:
        return 403, "InvalidProviderToken"
    now = state.clock.now()
    if now - issued_at >= TOKEN_LIFETIME:
        return 403, "ExpiredProviderToken"
    if not state.provider_tokens or state.provider_tokens[-1][0] != value:
        if (
            state.provider_tokens
            and issued_at - state.provider_tokens[-1][1] < TOKEN_UPDATE_INTERVAL
        ):
            return 429, "TooManyProviderTokenUpdates"
        state.provider_tokens.append((value, issued_at))
    return None
