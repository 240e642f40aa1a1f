"""When the monthly invoice run is due: the 1st of each month at `run_at` in the billing
time zone (`KABINET_BILLING_RUN_AT`, `KABINET_BILLING_TIMEZONE`), or any time after it
in that month.

The worker asks on start and on each tick; "any time after" is the catch-up: a worker down
at 03:00 on the 1st bills the month when it comes back. Only the current month: a worker
down across a whole month does not bill the month it missed when it returns (by then that
month is over, and whether to bill it late is an operator's call: `kabinet billing run
--period YYYY-MM`). Whether the due period was billed already is the run's own record
(`billing_runs`), not this rule's: it is a pure function of the time.
"""

from datetime import datetime, time
from zoneinfo import ZoneInfo

from domains.billing.proration import Period


def due_period(now: datetime, zone: ZoneInfo, run_at: time) -> Period | None:
    """The month whose run is due at `now`: the month `now` falls in, in `zone`, once its
    1st at `run_at` (wall time in `zone`) has come; None before that."""
    if now.utcoffset() is None:
        raise ValueError(f"a naive datetime is not a time: {now}")
    if run_at.tzinfo is not None:
        raise ValueError(f"the run's time of day is wall time in {zone.key}, not {run_at}")
    period = Period.of(now.astimezone(zone).date())
    fires = datetime.combine(period.start, run_at, tzinfo=zone)
    return period if now >= fires else None
