"""Push payload size: FCM and APNs both refuse a payload over 4 KB, so the body is cut to fit."""

import orjson

# APNs' limit for a notification payload; FCM's for a message is the same 4 KB.
MAX_PAYLOAD_BYTES = 4096
# The providers' own wrapping of title, body and data (`aps`, `alert`, `notification`...).
ENVELOPE_BYTES = 256


def payload_size(title: str, body: str, data: dict[str, str]) -> int:
    return len(orjson.dumps({"title": title, "body": body, "data": data})) + ENVELOPE_BYTES


def fit_push(title: str, body: str, data: dict[str, str]) -> str:
    """The body, cut with an ellipsis until the whole payload is within the limit."""
    if payload_size(title, body, data) <= MAX_PAYLOAD_BYTES:
        return body
    over = payload_size(title, body, data) - MAX_PAYLOAD_BYTES
    encoded = body.encode()
    # Cut bytes, then back off to a character boundary; JSON escapes may need more rounds.
    while True:
        cut = encoded[: max(0, len(encoded) - over - len("…".encode()))]
        text = cut.decode(errors="ignore").rstrip() + "…"
        if payload_size(title, text, data) <= MAX_PAYLOAD_BYTES:
            return text
        over += 16
