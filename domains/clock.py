"""The one clock: timezone-aware UTC, so no naive datetime enters the system.

What decides by the time (rate limits, session and token expiry) is handed a `Clock` by
the wiring (gateway/services.py): the system clock in production, a `ManualClock` in
tests, which move it forward instead of sleeping, so no test depends on how fast the
machine is or what hour it is. `utcnow()` is the system clock's reading, for code that
only stamps rows and events.
"""

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


SYSTEM_CLOCK = SystemClock()


def utcnow() -> datetime:
    return SYSTEM_CLOCK.now()


class ManualClock:
    """A clock that moves only when told to, for tests.

    It starts at the system's time by default: Redis expires keys on its own clock, so a
    session kept there must not look expired to Redis the moment it is written.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = _aware(start) if start is not None else utcnow()

    def now(self) -> datetime:
        return self._now

    def advance(self, by: timedelta) -> None:
        if by < timedelta(0):
            raise ValueError(f"a clock does not go back, got {by}")
        self._now += by


def _aware(moment: datetime) -> datetime:
    if moment.utcoffset() is None:
        raise ValueError(f"a naive datetime is not a time: {moment}")
    return moment.astimezone(UTC)
