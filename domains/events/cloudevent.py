"""The CloudEvents 1.0 JSON envelope every outbox event travels in.

Structured mode: the whole event is one JSON object in the Kafka message value, so a
consumer needs no headers to read it. `id` is the outbox row's id, so a redelivered event
is recognisably the same event; `subject` is the outbox subject (`customer:<id>`), also the
message key.
"""

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"


class InvalidEvent(ValueError):
    """A message that is not a CloudEvent this system can read (a poison message)."""


@dataclass(frozen=True, slots=True)
class CloudEvent:
    id: uuid.UUID
    type: str
    source: str
    subject: str
    time: datetime
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def customer_id(self) -> int | None:
        """The customer the event is about, when its subject names one."""
        kind, _, key = self.subject.partition(":")
        return int(key) if kind == "customer" and key.isdigit() else None

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "specversion": SPEC_VERSION,
                "id": str(self.id),
                "source": self.source,
                "type": self.type,
                "subject": self.subject,
                "time": self.time.isoformat(),
                "datacontenttype": CONTENT_TYPE,
                "data": self.data,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> "CloudEvent":
        try:
            body = json.loads(raw)
            if body.get("specversion") != SPEC_VERSION:
                raise InvalidEvent(f"unsupported specversion {body.get('specversion')!r}")
            time = datetime.fromisoformat(body["time"])
            if time.tzinfo is None:
                raise InvalidEvent("event time without a zone")
            data = body.get("data") or {}
            if not isinstance(data, dict):
                raise InvalidEvent("event data is not a JSON object")
            return cls(
                id=uuid.UUID(body["id"]),
                type=str(body["type"]),
                source=str(body["source"]),
                subject=str(body.get("subject", "")),
                time=time,
                data=data,
            )
        except InvalidEvent:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise InvalidEvent(f"not a CloudEvent: {error}") from error
