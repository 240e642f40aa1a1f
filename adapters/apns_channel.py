"""iOS push through APNs with token-based authentication, over HTTP/2.

`POST {base_url}/3/device/<device token>` on one HTTP/2 connection (httpx with h2, TLS and
ALPN, as APNs accepts nothing else), the alert as `{"aps": {"alert": {"title", "body"},
"sound": "default"}, ...data}`, and the headers `authorization: bearer <provider token>`,
`apns-topic` (the app's bundle id), `apns-push-type: alert`, `apns-priority` (10 now, 5
when convenient), `apns-expiration` (Unix seconds, 0: once only) and `apns-id` (a UUID
derived from our idempotency key, which APNs answers with and its feedback names).

The provider token is an ES256 JWT (header `kid`: the key id; claims `iss`: the team id,
`iat`), signed with the team's .p8 key. APNs refuses one older than an hour
(`ExpiredProviderToken`) and throttles one renewed more often than every 20 minutes
(`TooManyProviderTokenUpdates`): each is kept for `token_refresh` (40 minutes), by the
injected clock, and renewed then, or at once when APNs says it expired.

Answers, by `reason`: 410 `Unregistered`, 400 `BadDeviceToken` and `DeviceTokenNotForTopic`
mean the token is dead for this app: `RecipientGone`. 429 `TooManyRequests`, 5xx and
`InvalidProviderToken` (our key, to be fixed) are temporary; other 4xx, such as 413
`PayloadTooLarge`, are the message's: permanent.
"""

import json
import ssl
import uuid
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey

from domains.clock import Clock
from domains.notifications.channel import (
    OutgoingMessage,
    PermanentFailure,
    PushPriority,
    RecipientGone,
    Sent,
    TemporaryFailure,
)

PROVIDER = "apns"
TOKEN_REFRESH = timedelta(minutes=40)
# Apple's bounds for TOKEN_REFRESH: sooner is throttled, later is refused.
TOKEN_REFRESH_BOUNDS = (timedelta(minutes=20), timedelta(minutes=60))
GONE = frozenset({"Unregistered", "BadDeviceToken", "DeviceTokenNotForTopic"})
# Ours to fix (the key, the clock) or APNs' to recover from: the message is still good.
TEMPORARY = frozenset(
    {
        "TooManyRequests",
        "InvalidProviderToken",
        "ExpiredProviderToken",
        "TooManyProviderTokenUpdates",
        "Shutdown",
    }
)
# Our idempotency keys become APNs ids in a namespace of our own.
APNS_ID_NAMESPACE = uuid.UUID("6f0b3c2e-5a41-4d7e-9a51-1c8f0e2d7b44")


class ApnsChannel:
    def __init__(
        self,
        *,
        key_pem: str,
        key_id: str,
        team_id: str,
        topic: str,
        clock: Clock,
        base_url: str = "https://api.push.apple.com",
        tls_context: ssl.SSLContext | None = None,
        token_refresh: timedelta = TOKEN_REFRESH,
        timeout: float = 10.0,
    ) -> None:
        low, high = TOKEN_REFRESH_BOUNDS
        if not low <= token_refresh < high:
            raise ValueError(
                f"APNs provider tokens are renewed after 20 to 60 minutes, not {token_refresh}"
            )
        self._key = ECKey.import_key(key_pem)
        self._key_id, self._team_id, self._topic = key_id, team_id, topic
        self._clock = clock
        self._refresh = token_refresh
        self._base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(
            http1=False, http2=True, verify=tls_context or True, timeout=timeout
        )
        self._token: tuple[str, datetime] | None = None

    async def send(self, message: OutgoingMessage) -> Sent:
        body = json.dumps(self._payload(message), ensure_ascii=False).encode()
        headers = self._headers(message)
        response = await self._post(message.to, body, headers)
        if (
            response.status_code == httpx.codes.FORBIDDEN
            and _reason(response) == "ExpiredProviderToken"
        ):
            self._token = None
            response = await self._post(message.to, body, headers)
        if response.status_code == httpx.codes.OK:
            return Sent(PROVIDER, response.headers.get("apns-id", headers["apns-id"]))
        raise _failure(response)

    async def aclose(self) -> None:
        await self._client.aclose()

    def _provider_token(self) -> str:
        """The JWT in use, a new one once the current one is `token_refresh` old."""
        now = self._clock.now()
        if self._token is None or now - self._token[1] >= self._refresh:
            value = jwt.encode(
                {"alg": "ES256", "kid": self._key_id},
                {"iss": self._team_id, "iat": int(now.timestamp())},
                self._key,
            )
            self._token = (value, now)
        return self._token[0]

    async def _post(self, device: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        try:
            return await self._client.post(
                f"{self._base_url}/3/device/{quote(device, safe='')}",
                content=body,
                headers=headers | {"authorization": f"bearer {self._provider_token()}"},
            )
        except httpx.HTTPError as error:
            raise TemporaryFailure(PROVIDER, "UNREACHABLE", str(error)) from error

    def _headers(self, message: OutgoingMessage) -> dict[str, str]:
        expiration = 0 if message.expires_at is None else int(message.expires_at.timestamp())
        return {
            "apns-topic": message.app_id or self._topic,
            "apns-push-type": "alert",
            "apns-priority": "10" if message.priority is PushPriority.HIGH else "5",
            "apns-expiration": str(expiration),
            "apns-id": str(uuid.uuid5(APNS_ID_NAMESPACE, message.idempotency_key)),
            "content-type": "application/json",
        }

    @staticmethod
    def _payload(message: OutgoingMessage) -> dict[str, Any]:
        aps = {"alert": {"title": message.subject, "body": message.text}, "sound": "default"}
        return {**message.data, "aps": aps}


def _reason(response: httpx.Response) -> str:
    try:
        return str(response.json()["reason"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP_{response.status_code}"


def _failure(response: httpx.Response) -> PermanentFailure | TemporaryFailure:
    reason = _reason(response)
    if reason in GONE:
        return RecipientGone(PROVIDER, reason)
    if reason in TEMPORARY or response.status_code >= 500 or response.status_code == 429:
        retry = response.headers.get("retry-after", "")
        return TemporaryFailure(
            PROVIDER, reason, retry_after=timedelta(seconds=int(retry)) if retry.isdigit() else None
        )
    return PermanentFailure(PROVIDER, reason)
