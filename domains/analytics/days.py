"""The analytics' days: UTC days, and the ranges staff may ask for.

A counter lands on the UTC day of the fact it counts (a payment's commit, an invoice's
issue), not of its processing, so a late or redelivered event lands on its own day.
"""

from datetime import UTC, date, datetime

from domains.errors import InvalidInput

# A year, leap day included: longer ranges are an export's job, not a query's.
MAX_RANGE_DAYS = 366


def utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def check_range(start: date, end: date) -> None:
    """Refuses a range that runs backwards or is longer than `MAX_RANGE_DAYS`."""
    if end < start:
        raise InvalidInput("the range ends before it starts")
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise InvalidInput(f"a range is at most {MAX_RANGE_DAYS} days")
