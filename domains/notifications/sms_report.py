"""SMS delivery reports: the gateway's signed callback saying whether a message arrived.

Our SMS gateways (SMSC.ru-shaped, adapters/sms_gateway.py) post a form to our callback
URL when the operator reports on a message:

    id=<the gateway's message id>&phone=79161234567&status=1&time=<unix seconds>&err=0

with `X-Signature-Timestamp` (Unix seconds) and `X-Signature: v1=<hex>`, HMAC-SHA256 with
the provider's callback secret over `<timestamp>.<raw body>`, as the payment webhooks are
signed (domains/billing/webhook.py): compared in constant time, timestamps outside the
tolerance refused, so a captured report cannot be replayed later.

`status` is SMSC's: 1 delivered; 3 expired, 20 undeliverable, 22-25 refused by the
operator or the phone: failed; the others (queued, handed to the operator) are on the way
and report nothing yet.
"""

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

from domains.errors import InvalidInput, Unauthenticated
from domains.notifications.channel import DeliveryReport, DeliveryStatus

DELIVERED = "1"
FAILED = frozenset({"3", "20", "22", "23", "24", "25"})


def report_signature(secret: bytes, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def read_report(
    *,
    provider: str,
    secret: bytes,
    timestamp: str,
    signature: str,
    body: bytes,
    now: datetime,
    tolerance: timedelta,
) -> DeliveryReport | None:
    """The report a signed callback carries; None while the message is still on its way.

    Raises `Unauthenticated` for a bad signature or a stale timestamp, `InvalidInput` for a
    signed body that is not a report."""
    try:
        sent_at = datetime.fromtimestamp(int(timestamp), UTC)
    except (ValueError, OverflowError, OSError):
        raise Unauthenticated("bad delivery report signature") from None
    expected = report_signature(secret, timestamp, body)
    if not hmac.compare_digest(expected, signature) or abs(now - sent_at) > tolerance:
        raise Unauthenticated("bad delivery report signature, or its timestamp is too old")
    fields = {name: values[0] for name, values in parse_qs(body.decode("latin-1")).items()}
    try:
        message_id, status = fields["id"], fields["status"]
        at = datetime.fromtimestamp(int(fields["time"]), UTC)
    except (KeyError, ValueError, OverflowError, OSError):
        raise InvalidInput("a delivery report has id, status and time") from None
    if status == DELIVERED:
        return DeliveryReport(provider, message_id, DeliveryStatus.DELIVERED, at)
    if status in FAILED:
        error = f"status {status}, error {fields.get('err', '0')}"
        return DeliveryReport(provider, message_id, DeliveryStatus.FAILED, at, error)
    return None
