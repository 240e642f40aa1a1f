"""Android push through FCM's HTTP v1 API, signed in as a Google service account.

`POST {base_url}/v1/projects/<project id>/messages:send` with `{"message": {"token",
"notification": {"title", "body"}, "data", "android": {"priority", "ttl"}}}` and an OAuth2
access token. The token comes from the service account's token URI for a JWT assertion
(RFC 7523: RS256 with the account's key, `kid` its key id, `iss` its email, `aud` the token
URI, `scope` FCM's), signed with authlib; it lives an hour and is kept until five minutes
before it ends, on the injected clock, so many messages cost one token request, and
concurrent sends that find none wait for the one request under way. (authlib's
`AsyncAssertionClient` would also cache it, but by the wall clock.)

Answers, by FCM's `errorCode`: `UNREGISTERED` (404) and `SENDER_ID_MISMATCH` (403) mean the
token is dead for us: `RecipientGone`. `INVALID_ARGUMENT` (400) is the message's:
permanent. `QUOTA_EXCEEDED` (429), `UNAVAILABLE` (503) and `INTERNAL` (500) are temporary,
with FCM's `Retry-After`. A 401 means our token was refused: it is dropped and the message
tried once with a new one.
"""

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from authlib.oauth2.rfc7523 import JWTBearerGrant
from joserfc.jwk import RSAKey

from domains.clock import Clock
from domains.notifications.channel import (
    OutgoingMessage,
    PermanentFailure,
    PushPriority,
    RecipientGone,
    Sent,
    TemporaryFailure,
)

PROVIDER = "fcm"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
ASSERTION_LIFETIME = timedelta(hours=1)  # Google's most
REFRESH_BEFORE = timedelta(minutes=5)
GONE = frozenset({"UNREGISTERED", "SENDER_ID_MISMATCH"})
TEMPORARY = frozenset({"QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL", "THIRD_PARTY_AUTH_ERROR"})


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """The fields of a Google service account key file that FCM needs."""

    project_id: str
    client_email: str
    private_key: str
    private_key_id: str
    token_uri: str

    @classmethod
    def from_json(cls, text: str) -> "ServiceAccount":
        data = json.loads(text)
        return cls(
            project_id=data["project_id"],
            client_email=data["client_email"],
            private_key=data["private_key"],
            private_key_id=data["private_key_id"],
            token_uri=data["token_uri"],
        )


@dataclass(frozen=True, slots=True)
class _AccessToken:
    value: str
    expires_at: datetime


class FcmChannel:
    def __init__(
        self,
        account: ServiceAccount,
        *,
        clock: Clock,
        base_url: str = "https://fcm.googleapis.com",
        timeout: float = 10.0,
    ) -> None:
        self._account = account
        self._key = RSAKey.import_key(account.private_key)
        self._clock = clock
        self._send_url = f"{base_url.rstrip('/')}/v1/projects/{account.project_id}/messages:send"
        # HTTP/2 where FCM offers it: every message rides one connection.
        self._client = httpx.AsyncClient(http2=True, timeout=timeout)
        self._token: _AccessToken | None = None
        self._token_lock = asyncio.Lock()

    async def send(self, message: OutgoingMessage) -> Sent:
        body = {"message": self._payload(message)}
        token = await self._access_token()
        response = await self._post(body, token)
        if response.status_code == httpx.codes.UNAUTHORIZED:
            self._forget(token)
            response = await self._post(body, await self._access_token())
        if response.status_code == httpx.codes.OK:
            return Sent(PROVIDER, str(response.json()["name"]))
        raise _failure(response)

    async def _post(self, body: dict[str, Any], token: str) -> httpx.Response:
        try:
            return await self._client.post(
                self._send_url, json=body, headers={"Authorization": f"Bearer {token}"}
            )
        except httpx.HTTPError as error:
            raise TemporaryFailure(PROVIDER, "UNREACHABLE", str(error)) from error

    async def aclose(self) -> None:
        await self._client.aclose()

    def _payload(self, message: OutgoingMessage) -> dict[str, Any]:
        android: dict[str, Any] = {
            "priority": "HIGH" if message.priority is PushPriority.HIGH else "NORMAL"
        }
        if message.expires_at is not None:
            seconds = max(0, int((message.expires_at - self._clock.now()).total_seconds()))
            android["ttl"] = f"{seconds}s"
        payload: dict[str, Any] = {
            "token": message.to,
            "notification": {"title": message.subject, "body": message.text},
            "android": android,
        }
        if message.data:
            payload["data"] = dict(message.data)
        return payload

    async def _access_token(self) -> str:
        async with self._token_lock:
            now = self._clock.now()
            if self._token is None or now >= self._token.expires_at - REFRESH_BEFORE:
                self._token = await self._new_token(now)
            return self._token.value

    def _forget(self, token: str) -> None:
        if self._token is not None and self._token.value == token:
            self._token = None

    async def _new_token(self, now: datetime) -> _AccessToken:
        issued_at = int(now.timestamp())
        assertion = JWTBearerGrant.sign(
            self._key,
            issuer=self._account.client_email,
            audience=self._account.token_uri,
            issued_at=issued_at,
            expires_at=issued_at + int(ASSERTION_LIFETIME.total_seconds()),
            claims={"scope": SCOPE},
            header={"alg": "RS256", "kid": self._account.private_key_id},
        )
        try:
            response = await self._client.post(
                self._account.token_uri,
                data={"grant_type": JWTBearerGrant.GRANT_TYPE, "assertion": assertion},
            )
        except httpx.HTTPError as error:
            raise TemporaryFailure(PROVIDER, "TOKEN_UNREACHABLE", str(error)) from error
        try:
            response.raise_for_status()
            answer = response.json()
            return _AccessToken(
                value=str(answer["access_token"]),
                expires_at=now + timedelta(seconds=int(answer["expires_in"])),
            )
        except (httpx.HTTPStatusError, ValueError, KeyError, TypeError) as error:
            # The account or its key, not the message: retried once the key is fixed.
            raise TemporaryFailure(PROVIDER, "TOKEN_REFUSED", response.text[:200]) from error


def _failure(response: httpx.Response) -> PermanentFailure | TemporaryFailure:
    try:
        error = response.json()["error"]
        status = str(error.get("status", ""))
        text = str(error.get("message", ""))
        codes = [
            str(detail["errorCode"])
            for detail in error.get("details", ())
            if isinstance(detail, dict) and "errorCode" in detail
        ]
    except (ValueError, KeyError, TypeError, AttributeError):
        status, text, codes = "", response.text[:200], []
    reason = codes[0] if codes else status or f"HTTP_{response.status_code}"
    if reason in GONE:
        return RecipientGone(PROVIDER, reason, text)
    if reason in TEMPORARY or response.status_code >= 500 or response.status_code in (401, 429):
        return TemporaryFailure(PROVIDER, reason, text, retry_after=_retry_after(response))
    return PermanentFailure(PROVIDER, reason, text)


def _retry_after(response: httpx.Response) -> timedelta | None:
    value = response.headers.get("retry-after", "")
    return timedelta(seconds=int(value)) if value.isdigit() else None
