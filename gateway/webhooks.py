"""`POST /webhooks/payments/{provider}`: the payment provider reports a payment's result.

Authenticated by the signature alone (`domains.billing.webhook`): HMAC-SHA256 with
`KABINET_PAYMENT_WEBHOOK_SECRET` over `<Webhook-Timestamp>.<body>`, compared in constant
time, the timestamp within `KABINET_PAYMENT_WEBHOOK_TOLERANCE`; otherwise 401 and nothing
happens. A handled event answers 200, and so does its redelivery (without effect), so the
provider stops retrying; a malformed one answers 400.
"""

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from domains.billing.webhook import parse_notice, settle, signature_valid
from domains.clock import utcnow
from domains.errors import DomainError
from gateway.errors import rest_error_response
from gateway.services import Services


async def payment_webhook(request: Request) -> Response:
    services: Services = request.app.state.services
    settings = services.settings
    provider = request.path_params["provider"]
    acquiring = services.acquiring
    secret = settings.payment_webhook_secret
    if acquiring is None or secret is None or provider != acquiring.provider.name:
        return rest_error_response(404, "NOT_FOUND", "no such payment provider")
    body = await request.body()
    if len(body) > settings.max_body_bytes:
        return rest_error_response(413, "PAYLOAD_TOO_LARGE", "the notification is too large")
    if not signature_valid(
        secret.get_secret_value().encode(),
        request.headers.get("webhook-timestamp", ""),
        request.headers.get("webhook-signature", ""),
        body,
        now=utcnow(),
        tolerance=settings.payment_webhook_tolerance,
    ):
        return rest_error_response(
            401, "UNAUTHENTICATED", "bad webhook signature, or its timestamp is too old"
        )
    try:
        payload = json.loads(body)
    except ValueError:
        return rest_error_response(400, "BAD_USER_INPUT", "the notification is not JSON")
    try:
        applied = await settle(services.db, provider, parse_notice(payload))
    except DomainError as error:
        return rest_error_response(400, error.code, error.message)
    return JSONResponse({"status": "ok" if applied else "duplicate"})
