"""What the customers' lifecycle rules read from the settings: the billing time zone (a
tariff change, a price and a pause start on a day in it) and a pause's limits."""

from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

from domains.clock import Clock


@dataclass(frozen=True, slots=True)
class LifecycleTerms:
    zone: ZoneInfo
    # KABINET_PAUSE_MIN_DAYS (one pause) and KABINET_PAUSE_MAX_DAYS (a calendar year's).
    pause_min_days: int = 7
    pause_max_days: int = 90

    def today(self, clock: Clock) -> date:
        return clock.now().astimezone(self.zone).date()


DEFAULT_TERMS = LifecycleTerms(ZoneInfo("Europe/Moscow"))
