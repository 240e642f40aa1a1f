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

from domains.base import CENT


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
        return calendar.monthrange(self.start.year, self.start.month)[1]

    @property
    def end(self) -> date:
        """The last day, inclusive."""
        return self.start.replace(day=self.days)


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
    billed = sorted(_billed_days(period, active))
    if not billed:
        return None
    cents, remainder = divmod(int(monthly_price / CENT) * len(billed), period.days)
    if 2 * remainder >= period.days:  # half-up: exactly half a cent goes up
        cents += 1
    if cents == 0:
        return None
    return Charge(
        period=period,
        first_day=billed[0],
        last_day=billed[-1],
        days=len(billed),
        unit_price=monthly_price,
        amount=Decimal(cents) * CENT,
    )


def _billed_days(period: Period, active: Iterable[Span]) -> set[date]:
    days: set[date] = set()
    for span in active:
        first = max(span.first, period.start)
        last = period.end if span.last is None else min(span.last, period.end)
        days.update(first + timedelta(days=n) for n in range((last - first).days + 1))
    return days
