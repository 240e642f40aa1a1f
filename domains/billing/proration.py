"""What one subscription owes for one month: the tariff's monthly price, prorated by day.

The rule (issue 13; Lago's calendar proration):
- The billing period is a calendar month. A day is billed when the subscription is active
  on it, for any part of it: the day it starts or resumes and the day it pauses or ends
  both count, and a day two spans share counts once.
- amount = monthly price x days billed / days in the month, rounded half-up to the cent
  once, for the whole line (never per day: a whole month is exactly the price). The
  division is done in whole cents, so no binary or context precision enters it.
- No day billed, or an amount that rounds to nothing: nothing to bill, and no line.

Lago's published example: 14 of 31 days of 100.00 is 45.16 (45.1612...).
The price is the one in force for the period; a line keeps it (`unit_price`), so a later
change of the tariff's price leaves earlier lines as they were billed.
"""

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from functools import cache

from domains.base import CENT

_DAY = timedelta(days=1)


@cache
@cache
def _days_in(year: int, month: int) -> int:
    """Once a month, not once a line: the run asks for each of its lines' periods."""
    return calendar.monthrange(year, month)[1]


@dataclass(frozen=True, slots=True)
class Period:
    """A calendar month, named by its first day."""

    start: date

    def __post_init__(self) -> None:
        if self.start.day != 1:
            raise ValueError(f"a billing period starts on the 1st, not {self.start}")

    @classmethod
    def of(cls, day: date) -> "Period":
        return cls(day.replace(day=1))

    @property
    def days(self) -> int:
        return _days_in(self.start.year, self.start.month)

    @property
    def end(self) -> date:
        """The last day, inclusive."""
        return _last_day(self.start)


@cache
def _last_day(start: date) -> date:
    return start.replace(day=_days_in(start.year, start.month))


@dataclass(frozen=True, slots=True)
class Span:
    """Days a subscription was active, both ends included; `last` None: still active."""

    first: date
    last: date | None = None

    def __post_init__(self) -> None:
        if self.last is not None and self.last < self.first:
            raise ValueError(f"a span ends ({self.last}) before it starts ({self.first})")


@dataclass(frozen=True, slots=True)
class Charge:
    """One invoice line's worth: a subscription's billed days in a period, and their price."""

    period: Period
    first_day: date
    last_day: date
    days: int
    unit_price: Decimal
    amount: Decimal

    def describe(self, tariff_name: str) -> str:
        return (
            f"{tariff_name}: {self.first_day.isoformat()} to {self.last_day.isoformat()},"
            f" {self.days} of {self.period.days} days"
        )


def prorate(monthly_price: Decimal, period: Period, active: Iterable[Span]) -> Charge | None:
    """The charge for the days of `period` inside any of the `active` spans; None when
    there is nothing to bill."""
    if not isinstance(monthly_price, Decimal):
        raise TypeError(f"a price is a Decimal, not {type(monthly_price).__name__}")
    if not (
        monthly_price.is_finite()
        and monthly_price > 0
        and monthly_price == monthly_price.quantize(CENT)
    ):
        raise ValueError(
            f"a monthly price is a positive whole number of cents, not {monthly_price}"
        )
    days, first, last = _billed_days(period, active)
    if not days:
        return None
    cents, remainder = divmod(int(monthly_price / CENT) * days, period.days)
    if 2 * remainder >= period.days:  # half-up: exactly half a cent goes up
        cents += 1
    if cents == 0:
        return None
    return Charge(
        period=period,
        first_day=first,
        last_day=last,
        days=days,
        unit_price=monthly_price,
        amount=Decimal(cents) * CENT,
    )


def _billed_days(period: Period, active: Iterable[Span]) -> tuple[int, date, date]:
    """How many days of `period` the spans cover (a day two share counts once), and the
    first and last of them: the spans, cut to the period, merged where they touch. The run
    prorates every subscription of a month, so this counts spans, not days."""
    cut = []
    for span in active:
        first = max(span.first, period.start)
        last = period.end if span.last is None else min(span.last, period.end)
        if first <= last:
            cut.append((first, last))
    if not cut:
        return 0, period.start, period.start
    cut.sort()
    days = 0
    start, end = cut[0]
    for first, last in cut[1:]:
        if first > end + _DAY:
            days += (end - start).days + 1
            start = first
        end = max(end, last)
    days += (end - start).days + 1
    return days, cut[0][0], end
