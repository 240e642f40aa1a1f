"""The one clock: timezone-aware UTC, so no naive datetime enters the system."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
