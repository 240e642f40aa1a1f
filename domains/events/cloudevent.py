"""The CloudEvents 1.0 JSON envelope every outbox event travels in.

Structured mode: the whole event is one JSON object in the Kafka message value, so a
consumer needs no headers to read it. `id` is the outbox row's id, so a redelivered event
is recognisably the same event; `subject` is the outbox subject (`domains.events.subject`),
also the message key; `source` is the deployment's prefix and the event's domain
(`urn:kabinet:billing`).
"""

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.engine import Row

from domains.events.catalog import EventCatalog

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

    @classmethod
    def from_outbox(cls, row: Row[Any], catalog: EventCatalog) -> "CloudEvent":
        """The event an outbox row stands for: the relay publishes it, a resuming subscriber
        reads it back, and the two must not differ. Raises ValueError for a type of no
        known domain."""
        return cls(
            id=row.id,
            type=row.type,
            source=catalog.source_of(row.type),
            subject=row.subject,
            time=row.occurred_at,
            data=row.payload,
        )

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "specversion": SPEC_VERSION,
                "id": str(self.id),
                "source": self.source,
                "type": self.type,
                "subject": self.subject,
                "time": self.time.isoformat(),
                "datacontenttype": CONTENT_TYPE,
                "data": self.data,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes) -> "CloudEvent":
        try:
            body = orjson.loads(raw)
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
