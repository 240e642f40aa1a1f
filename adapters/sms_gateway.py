"""SMS through an HTTP gateway in the shape of SMSC.ru's API, and failover between two.

`POST {base_url}/sys/send.php`, a form: `login`, `psw`, `phones` (digits, no `+`), `mes`,
`sender` (the approved sender name), `id` (our id for the message: the gateway answers a
repeated one with the first message, so a retry after a lost answer sends nothing twice),
`fmt=3` (answers in JSON), `charset=utf-8`. The answer is HTTP 200 either way:
`{"id": "<message id>", "cnt": <segments>}` or `{"error": "...", "error_code": N}`.

Which failures are whose: the gateway's own (2 bad login, 3 no money, 4 our address
blocked, 9 too many requests, any 5xx or a lost connection) are temporary, and are what
the failover's second provider is for; the message's (1 bad parameters, 6 text or sender
refused, 7 a malformed number, 8 a number that cannot be reached) are permanent: another
gateway would refuse it the same way. Delivery reports come back as signed callbacks
(domains/notifications/sms_report.py).
"""

import json

import httpx

from domains.notifications.channel import (
    Channel,
    OutgoingMessage,
    PermanentFailure,
    Sent,
    TemporaryFailure,
)

PERMANENT_CODES = frozenset({1, 5, 6, 7, 8})


class SmsGateway:
    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        login: str,
        password: str,
        sender: str,
        timeout: float = 10.0,
    ) -> None:
        self.name = name
        self._login, self._password, self._sender = login, password, sender
        # One client per gateway: its keep-alive connections serve every message.
        self._client = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout)

    async def send(self, message: OutgoingMessage) -> Sent:
        form = {
            "login": self._login,
            "psw": self._password,
            "phones": message.to.removeprefix("+"),
            "mes": message.text,
            "sender": self._sender,
            "id": message.idempotency_key,
            "fmt": "3",
            "charset": "utf-8",
        }
        try:
            response = await self._client.post("/sys/send.php", data=form)
        except httpx.HTTPError as error:
            raise TemporaryFailure(self.name, "UNREACHABLE", str(error)) from error
        if response.status_code >= 500 or response.status_code == 429:
            raise TemporaryFailure(self.name, f"HTTP_{response.status_code}")
        try:
            answer = response.json()
            if "error_code" in answer:
                code, text = int(answer["error_code"]), str(answer.get("error", ""))
            else:
                return Sent(self.name, str(answer["id"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise TemporaryFailure(self.name, "BAD_ANSWER", response.text[:200]) from error
        if code in PERMANENT_CODES:
            raise PermanentFailure(self.name, f"ERROR_{code}", text)
        raise TemporaryFailure(self.name, f"ERROR_{code}", text)

    async def aclose(self) -> None:
        await self._client.aclose()


class SmsFailover:
    """The primary gateway, and on its temporary failure the secondary, for this message.

    A permanent failure is the message's, not the gateway's: it is not tried elsewhere.
    The answer names the gateway that took the message, which its report will name too.
    A primary whose answer was lost may have sent it: the secondary then sends it again,
    since one SMS twice is better than a payment or a reset code never told.
    """

    def __init__(self, primary: Channel, secondary: Channel) -> None:
        self._primary, self._secondary = primary, secondary

    async def send(self, message: OutgoingMessage) -> Sent:
        try:
            return await self._primary.send(message)
        except TemporaryFailure:
            return await self._secondary.send(message)
