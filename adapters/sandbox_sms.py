"""A local sandbox SMS gateway in the shape of SMSC.ru's API (adapters/sms_gateway.py
speaks it), for development and the tests, which run it as a real HTTP server.

- `POST /sys/send.php` checks `login` and `psw` against its account (error 2), the sender
  name against the approved ones (6), the number (7: not 11-15 digits; 8: a `7999000...`
  number, unassigned), then keeps the message and answers `{"id", "cnt"}` (`cnt`: the
  segments, 160/153 GSM-7 characters or 70/67 UCS-2 ones). A repeated `id` from the
  account answers the first message again, sending nothing.
- `POST /sandbox/messages/{id}/delivered` and `.../failed` play the operator's report: the
  gateway posts its signed callback (domains/notifications/sms_report.py) to the
  configured URL and answers the status our receiver answered with.
- `POST /sandbox/outage` (`?on=0` to end it) makes the gateway answer 503, as one does
  when it is down: the failover's case.
"""

import secrets
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from domains.clock import SYSTEM_CLOCK, Clock
from domains.notifications.sms import sms_length
from domains.notifications.sms_report import report_signature


@dataclass
class SandboxSms:
    login: str
    password: str
    senders: frozenset[str]
    report_url: str | None
    report_secret: bytes
    clock: Clock
    messages: dict[str, dict[str, str | int]] = field(default_factory=dict)
    by_client_id: dict[str, str] = field(default_factory=dict)
    reports: list[tuple[str, int]] = field(default_factory=list)
    down: bool = False


def _error(code: int, text: str) -> Response:
    return JSONResponse({"error": text, "error_code": code})


def create_sandbox_sms_app(
    *,
    login: str,
    password: str,
    senders: frozenset[str] = frozenset({"Kabinet"}),
    report_url: str | None = None,
    report_secret: bytes = b"",
    clock: Clock = SYSTEM_CLOCK,
) -> Starlette:
    """The gateway's state is `app.state.sandbox` (a `SandboxSms`): the tests read what it
    received there."""
    state = SandboxSms(login, password, senders, report_url, report_secret, clock)

    async def send(request: Request) -> Response:
        if state.down:
            return Response("service unavailable", status_code=503)
        # Parsed by hand: Starlette's form parser needs python-multipart for a urlencoded body.
        form = {name: vals[0] for name, vals in parse_qs((await request.body()).decode()).items()}
        values = {name: str(form.get(name, "")) for name in ("login", "psw", "phones", "mes")}
        if not all(values.values()):
            return _error(1, "parameters error")
        if not (
            secrets.compare_digest(values["login"], state.login)
            and secrets.compare_digest(values["psw"], state.password)
        ):
            return _error(2, "authorise error")
        sender = str(form.get("sender", ""))
        if sender not in state.senders:
            return _error(6, "message is denied")
        phone = values["phones"]
        if not (phone.isdigit() and 11 <= len(phone) <= 15):
            return _error(7, "invalid number")
        if phone.startswith("7999000"):
            return _error(8, "cannot deliver")
        client_id = str(form.get("id", ""))
        if client_id and client_id in state.by_client_id:
            first = state.messages[state.by_client_id[client_id]]
            return JSONResponse({"id": first["id"], "cnt": first["cnt"]})
        message_id = str(1_000_000 + len(state.messages))
        message: dict[str, str | int] = {
            "id": message_id,
            "phone": phone,
            "text": values["mes"],
            "sender": sender,
            "client_id": client_id,
            "cnt": sms_length(values["mes"]).segments,
        }
        state.messages[message_id] = message
        if client_id:
            state.by_client_id[client_id] = message_id
        return JSONResponse({"id": message_id, "cnt": message["cnt"]})

    async def report(request: Request) -> Response:
        message = state.messages.get(request.path_params["message_id"])
        outcome = request.path_params["outcome"]
        if message is None or outcome not in ("delivered", "failed") or not state.report_url:
            return JSONResponse({"error": "no such message"}, status_code=404)
        now = str(int(state.clock.now().timestamp()))
        body = urlencode(
            {
                "id": message["id"],
                "phone": message["phone"],
                "status": "1" if outcome == "delivered" else "20",
                "time": now,
                "err": "0" if outcome == "delivered" else "1",
            }
        ).encode()
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.post(
                state.report_url,
                content=body,
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Signature-Timestamp": now,
                    "X-Signature": report_signature(state.report_secret, now, body),
                },
            )
        state.reports.append((str(message["id"]), answer.status_code))
        return JSONResponse({"callback_status": answer.status_code})

    async def outage(request: Request) -> Response:
        state.down = request.query_params.get("on") != "0"
        return JSONResponse({"down": state.down})

    app = Starlette(
        routes=[
            Route("/sys/send.php", send, methods=["POST"]),
            Route("/sandbox/messages/{message_id}/{outcome:str}", report, methods=["POST"]),
            Route("/sandbox/outage", outage, methods=["POST"]),
        ]
    )
    app.state.sandbox = state
    return app
