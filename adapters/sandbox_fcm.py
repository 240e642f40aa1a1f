"""A local sandbox of Google's OAuth token endpoint and FCM's HTTP v1 API (adapters/
fcm_channel.py speaks it), for development and the tests, which serve it over HTTP.

- `POST /token` (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`, `assertion`)
  verifies the assertion as Google does: RS256 signed by the service account's key (its
  public key given to the sandbox, `kid` its key id), `iss` the account's email, `aud` this
  token URI, the FCM scope, issued now (a minute's skew) and living at most an hour. It
  answers `{"access_token", "expires_in": 3599, "token_type": "Bearer"}`, or 400
  `{"error": "invalid_grant", "error_description"}`.
- `POST /v1/projects/{project}/messages:send` wants a live bearer token of this project
  (401 `UNAUTHENTICATED` otherwise, 403 `PERMISSION_DENIED` for another project) and a
  valid message: a token, string title and body, string data values, 4 KB at most
  (400 `INVALID_ARGUMENT`). A token the tests marked unregistered answers 404
  `UNREGISTERED`; `quota_exceeded` and `unavailable` answer 429 `QUOTA_EXCEEDED` and 503
  `UNAVAILABLE` with `Retry-After`. Errors in FCM's shape: `{"error": {"code", "message",
  "status", "details": [{"@type": ".../google.firebase.fcm.v1.FcmError", "errorCode"}]}}`.
  A message taken answers `{"name": "projects/<project>/messages/<id>"}`.
"""

import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from domains.clock import SYSTEM_CLOCK, Clock

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
TOKEN_LIFETIME = timedelta(seconds=3599)
SKEW = timedelta(minutes=1)
MAX_PAYLOAD = 4096
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"


@dataclass
class SandboxFcm:
    project_id: str
    client_email: str
    key_id: str
    public_key: RSAKey
    token_uri: str
    clock: Clock
    tokens: dict[str, datetime] = field(default_factory=dict)
    token_requests: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    unregistered: set[str] = field(default_factory=set)
    quota_exceeded: bool = False
    unavailable: bool = False


def _grant_error(description: str) -> Response:
    return JSONResponse(
        {"error": "invalid_grant", "error_description": description}, status_code=400
    )


def _fcm_error(
    code: int, status: str, message: str, error_code: str | None = None, **headers: str
) -> Response:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if error_code is not None:
        error["details"] = [{"@type": FCM_ERROR, "errorCode": error_code}]
    return JSONResponse({"error": error}, status_code=code, headers=headers)


def create_sandbox_fcm_app(
    *,
    project_id: str,
    client_email: str,
    key_id: str,
    public_key_pem: str,
    token_uri: str,
    clock: Clock = SYSTEM_CLOCK,
) -> Starlette:
    """The sandbox's state is `app.state.sandbox` (a `SandboxFcm`): the tests read what it
    received and mark tokens unregistered there."""
    state = SandboxFcm(
        project_id, client_email, key_id, RSAKey.import_key(public_key_pem), token_uri, clock
    )

    async def token(request: Request) -> Response:
        state.token_requests += 1
        form = {
            name: values[0] for name, values in parse_qs((await request.body()).decode()).items()
        }
        if form.get("grant_type") != JWT_BEARER:
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        try:
            assertion = jwt.decode(
                form.get("assertion", ""), state.public_key, algorithms=["RS256"]
            )
        except (JoseError, ValueError):
            return _grant_error("Invalid JWT Signature.")
        header, claims = assertion.header, assertion.claims
        now = state.clock.now().timestamp()
        try:
            issued_at, expires_at = float(claims["iat"]), float(claims["exp"])
        except (KeyError, TypeError, ValueError):
            return _grant_error("Invalid JWT: iat and exp are required.")
        if header.get("kid") != state.key_id or claims.get("iss") != state.client_email:
            return _grant_error("Invalid JWT Signature.")
        if claims.get("aud") != state.token_uri:
            return _grant_error("Invalid JWT: audience is not the token URI.")
        if SCOPE not in str(claims.get("scope", "")).split():
            return _grant_error("Invalid JWT: the scope is missing.")
        lifetime = expires_at - issued_at
        if abs(now - issued_at) > SKEW.total_seconds() or not 0 < lifetime <= 3600:
            return _grant_error("Invalid JWT: Token must be a short-lived token (60 minutes).")
        access_token = f"ya29.sandbox-{secrets.token_urlsafe(24)}"
        state.tokens[access_token] = state.clock.now() + TOKEN_LIFETIME
        return JSONResponse(
            {
                "access_token": access_token,
                "expires_in": int(TOKEN_LIFETIME.total_seconds()),
                "token_type": "Bearer",
            }
        )

    async def send(request: Request) -> Response:
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        expires_at = state.tokens.get(bearer) if scheme.lower() == "bearer" else None
        if expires_at is None or state.clock.now() >= expires_at:
            return _fcm_error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token.",
            )
        if request.path_params["project"] != state.project_id:
            return _fcm_error(403, "PERMISSION_DENIED", "Permission denied on the project.")
        if state.unavailable:
            return _fcm_error(
                503,
                "UNAVAILABLE",
                "The service is unavailable.",
                "UNAVAILABLE",
                **{"Retry-After": "30"},
            )
        if state.quota_exceeded:
            return _fcm_error(
                429,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded for the project.",
                "QUOTA_EXCEEDED",
                **{"Retry-After": "60"},
            )
        raw = await request.body()
        problem = _invalid(raw)
        if problem:
            return _fcm_error(400, "INVALID_ARGUMENT", problem, "INVALID_ARGUMENT")
        message = json.loads(raw)["message"]
        if message["token"] in state.unregistered:
            return _fcm_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED")
        state.received.append(message)
        message_id = f"0:{len(state.received)}%{secrets.token_hex(8)}"
        return JSONResponse({"name": f"projects/{state.project_id}/messages/{message_id}"})

    app = Starlette(
        routes=[
            Route("/token", token, methods=["POST"]),
            Route("/v1/projects/{project}/messages:send", send, methods=["POST"]),
        ]
    )
    app.state.sandbox = state
    return app


def _invalid(raw: bytes) -> str | None:
    """What FCM would refuse in the body, or None."""
    try:
        message = json.loads(raw)["message"]
    except (ValueError, KeyError, TypeError):
        return "Invalid JSON payload received."
    if not isinstance(message, dict) or not isinstance(message.get("token"), str):
        return "The registration token is not a valid FCM registration token"
    notification = message.get("notification", {})
    if not all(isinstance(notification.get(name, ""), str) for name in ("title", "body")):
        return "Invalid value at 'message.notification'."
    data = message.get("data", {})
    if not isinstance(data, dict) or not all(isinstance(value, str) for value in data.values()):
        return "Invalid value at 'message.data': values must be strings."
    if len(raw) > MAX_PAYLOAD:
        return "Message is too big"
    return None
