"""When the monthly run is due (domains/billing/billing_schedule.py), read off a ManualClock:
the 1st at the run's time in the billing zone, the catch-up after it, only the current
month."""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from domains.billing.billing_schedule import due_period
from domains.billing.proration import Period
from domains.clock import ManualClock

MOSCOW = ZoneInfo("Europe/Moscow")  # UTC+3 all year
NEW_YORK = ZoneInfo("America/New_York")  # UTC-5 in winter, UTC-4 in summer
THREE = time(3, 0)


def due(clock: ManualClock, zone: ZoneInfo = MOSCOW, run_at: time = THREE) -> Period | None:
    return due_period(clock.now(), zone, run_at)


def test_the_run_is_due_from_the_1st_at_its_time_in_the_zone():
    # 02:59 on 1 February in Moscow is 23:59 on 31 January in UTC.
    clock = ManualClock(datetime(2026, 1, 31, 23, 59, tzinfo=UTC))
    assert due(clock) is None
    clock.advance(timedelta(minutes=1))  # 03:00 in Moscow
    assert due(clock) == Period(date(2026, 2, 1))
    clock.advance(timedelta(days=27, hours=20, minutes=59))  # 28 Feb, 23:59 in Moscow
    assert due(clock) == Period(date(2026, 2, 1))


def test_a_month_begins_in_the_zone_not_in_utc():
    # Midnight of 1 March in Moscow is still 28 February in UTC: March is due.
    midnight = time(0, 0)
    assert due(ManualClock(datetime(2026, 2, 28, 21, 0, tzinfo=UTC)), run_at=midnight) == Period(
        date(2026, 3, 1)
    )
    # 03:00 UTC on 1 March is 22:00 on 28 February in New York: February is still the month,
    # and its run was due long ago.
    assert due(ManualClock(datetime(2026, 3, 1, 3, 0, tzinfo=UTC)), NEW_YORK) == Period(
        date(2026, 2, 1)
    )
    # 1 July, 03:00 in New York (summer time, UTC-4) is 07:00 UTC.
    clock = ManualClock(datetime(2026, 7, 1, 6, 59, tzinfo=UTC))
    assert due(clock, NEW_YORK) is None
    clock.advance(timedelta(minutes=1))
    assert due(clock, NEW_YORK) == Period(date(2026, 7, 1))


@pytest.mark.parametrize(
    ("fired", "period"),
    [
        (datetime(2027, 1, 1, 0, 0, tzinfo=UTC), date(2027, 1, 1)),  # the year turns
        (datetime(2028, 2, 29, 12, 0, tzinfo=UTC), date(2028, 2, 1)),  # a leap day
        (datetime(2026, 4, 30, 20, 59, tzinfo=UTC), date(2026, 4, 1)),  # a 30-day month's end
        (datetime(2026, 1, 31, 20, 59, tzinfo=UTC), date(2026, 1, 1)),  # a 31-day month's end
    ],
)
def test_month_ends(fired: datetime, period: date):
    assert due(ManualClock(fired)) == Period(period)


def test_a_worker_down_over_a_month_bills_only_the_current_one_when_back():
    clock = ManualClock(datetime(2026, 1, 15, 12, 0, tzinfo=UTC))
    assert due(clock) == Period(date(2026, 1, 1))
    # Down from mid-January to 10 March: February's 1st passed unseen.
    clock.advance(timedelta(days=54))
    assert clock.now().date() == date(2026, 3, 10)
    assert due(clock) == Period(date(2026, 3, 1))


def test_the_rule_takes_wall_time_and_aware_moments_only():
    with pytest.raises(ValueError, match="naive"):
        due_period(datetime(2026, 2, 1, 3, 0), MOSCOW, THREE)
    with pytest.raises(ValueError, match="wall time"):
        due_period(datetime(2026, 2, 1, tzinfo=UTC), MOSCOW, time(3, 0, tzinfo=UTC))
