"""A local sandbox acquirer, in the shape of YooKassa's and Stripe's APIs, for development
and the tests (which run it as a real HTTP server).

- `POST /v1/payments` (header `Idempotence-Key`, body `{amount: {value, currency},
  description, confirmation: {type: "redirect", return_url}}`) creates a payment and
  answers `{id, status: "pending", amount, confirmation_url}`; the same key answers the
  same payment again. `GET /v1/payments/{id}` answers the payment as it is now.
- `POST /v1/payments/{id}/cancel` cancels a pending payment (`status: "canceled"`,
  `cancellation_details: {party: "merchant", ...}`) and answers it; one already canceled
  is answered as it is; one that succeeded is refused with 409 and the payment in
  `payment`, as YooKassa and Stripe refuse it.
- `POST /sandbox/payments/{id}/succeed` and `.../fail` play the payer confirming or the
  bank declining: the payment settles and its signed webhook
  (`domains.billing.webhook`) is sent to the configured URL; the answer reports the event
  and the status our webhook answered with. `?deliver=0` loses the webhook instead
  (`webhook_status` null), as a network would. A payment the merchant canceled is over:
  both are refused with 409 and the payment. Otherwise they play any outcome, even again,
  so the tests can send the receiver conflicting events.
- `POST /sandbox/events/{id}/redeliver` sends an event again, signed afresh, as
  providers do when they are unsure it arrived.
"""

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from domains.billing.webhook import CANCELED, SUCCEEDED, signature

MERCHANT_CANCEL = {"party": "merchant", "reason": "canceled_by_merchant"}


@dataclass
class SandboxState:
    webhook_url: str
    secret: bytes
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_key: dict[str, str] = field(default_factory=dict)
    events: dict[str, bytes] = field(default_factory=dict)


def _error(status: int, message: str) -> Response:
    return JSONResponse({"type": "error", "description": message}, status_code=status)


def _refused(payment: dict[str, Any], message: str) -> Response:
    """A conflict with the payment's state; the payment comes along, so the caller learns
    the state without asking again."""
    return JSONResponse(
        {"type": "error", "description": message, "payment": payment}, status_code=409
    )


def create_sandbox_app(webhook_url: str, secret: bytes) -> Starlette:
    state = SandboxState(webhook_url, secret)

    async def create_payment(request: Request) -> Response:
        key = request.headers.get("idempotence-key")
        if not key:
            return _error(400, "Idempotence-Key header is required")
        if key in state.by_key:
            return JSONResponse(state.payments[state.by_key[key]])
        try:
            body = json.loads(await request.body())
            amount = {"value": str(body["amount"]["value"]), "currency": body["amount"]["currency"]}
        except (ValueError, KeyError, TypeError):
            return _error(400, "amount {value, currency} is required")
        payment_id = f"sbx_{secrets.token_hex(8)}"
        payment = {
            "id": payment_id,
            "status": "pending",
            "amount": amount,
            "description": body.get("description", ""),
            "confirmation_url": f"{str(request.base_url).rstrip('/')}/checkout/{payment_id}",
        }
        state.payments[payment_id] = payment
        state.by_key[key] = payment_id
        return JSONResponse(payment)

    async def get_payment(request: Request) -> Response:
        payment = state.payments.get(request.path_params["payment_id"])
        if payment is None:
            return _error(404, "no such payment")
        return JSONResponse(payment)

    async def cancel_payment(request: Request) -> Response:
        payment = state.payments.get(request.path_params["payment_id"])
        if payment is None:
            return _error(404, "no such payment")
        if payment["status"] == "succeeded":
            return _refused(payment, "the payment has succeeded; it cannot be canceled")
        if payment["status"] == "pending":
            payment["status"] = "canceled"
            payment["cancellation_details"] = MERCHANT_CANCEL
        return JSONResponse(payment)

    async def send(event_id: str) -> int:
        body = state.events[event_id]
        timestamp = str(int(time.time()))
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(
                state.webhook_url,
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "Webhook-Timestamp": timestamp,
                    "Webhook-Signature": signature(state.secret, timestamp, body),
                },
            )
        return response.status_code

    async def settle(request: Request) -> Response:
        payment = state.payments.get(request.path_params["payment_id"])
        if payment is None or request.path_params["outcome"] not in ("succeed", "fail"):
            return _error(404, "no such payment")
        if payment.get("cancellation_details") == MERCHANT_CANCEL:
            return _refused(payment, "the merchant canceled the payment")
        succeeded = request.path_params["outcome"] == "succeed"
        payment["status"] = "succeeded" if succeeded else "canceled"
        event_id = f"evt_{secrets.token_hex(8)}"
        event = {
            "id": event_id,
            "type": SUCCEEDED if succeeded else CANCELED,
            "object": {
                "id": payment["id"],
                "status": payment["status"],
                "amount": payment["amount"],
            },
        }
        state.events[event_id] = json.dumps(event).encode()
        delivered = request.query_params.get("deliver") != "0"
        return JSONResponse(
            {"event": event, "webhook_status": await send(event_id) if delivered else None}
        )

    async def redeliver(request: Request) -> Response:
        event_id = request.path_params["event_id"]
        if event_id not in state.events:
            return _error(404, "no such event")
        return JSONResponse({"webhook_status": await send(event_id)})

    return Starlette(
        routes=[
            Route("/v1/payments", create_payment, methods=["POST"]),
            Route("/v1/payments/{payment_id}", get_payment, methods=["GET"]),
            Route("/v1/payments/{payment_id}/cancel", cancel_payment, methods=["POST"]),
            Route(
                "/sandbox/payments/{payment_id}/{outcome:str}",
                settle,
                methods=["POST"],
            ),
            Route("/sandbox/events/{event_id}/redeliver", redeliver, methods=["POST"]),
        ]
    )
