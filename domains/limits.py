"""The one rate limiter: GCRA budgets for the gateway and for login brute-force protection.

GCRA (generic cell rate algorithm) keeps one number per key, the theoretical arrival time
(TAT): the moment the budget would be full again. A request of `cost` units pushes the TAT
`cost` emission intervals (`period / limit`) forward, and is allowed while the TAT stays
within one `period` of now, so `limit` is both the sustained rate and the burst. A denied
request leaves the TAT alone: refused attempts cost nothing, and a client told to retry
after `retry_after` seconds will be let in then.

`gcra()` is the arithmetic as a pure function on microseconds. Both limiters read the time
from the `Clock` they are handed (domains/clock.py) and call it; the Redis limiter
(adapters/redis_limiter.py) mirrors its admission test and TAT update in one Lua script, so
the check and the write are atomic, and its `Decision` comes from `gcra()` on the time it
sent and the TAT the script read, so both limiters report the same figures. Both sides use
IEEE doubles in the same order of operations, hence the same results; times are counted
from `EPOCH` so they stay small enough for sub-microsecond precision. Gateway instances
sharing budgets in Redis each send their own clock's time: NTP keeps them within
milliseconds, and a skew lets a client moving between instances gain at most that skew's
share of a budget, never a burst above the limit. A clock stepped back makes a budget
refill later by the step, never sooner.

When the limiter's store cannot be reached, the policy decides:
- "open" (the default) lets the request through and logs a warning at most once a minute.
  A rate limiter protects the system from excess load; turning an outage of the limiter's
  store into an outage of the whole portal would be worse than a few minutes unlimited.
- "closed" raises `LimiterUnavailable`, so the caller refuses. Choose it where an
  unmetered request is worse than a refused one. Sign-in budgets are always "closed"
  (domains/identity/throttle.py): password guessing never runs unchecked, even for the
  length of a Redis outage.
"""

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from domains.clock import Clock

EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
SLACK_US = 1.0  # rounding tolerance of the admission test: one microsecond
_MIN_SWEEP = 1024  # the memory limiter sweeps only once it tracks more keys than this


@dataclass(frozen=True, slots=True)
class Rate:
    """`limit` units per `period`; `limit` is also the largest burst."""

    limit: int
    period: timedelta

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"rate limit must be at least 1, got {self.limit}")
        if self.period < timedelta(microseconds=1):
            raise ValueError(f"rate period must be positive, got {self.period}")

    @property
    def period_us(self) -> int:
        return self.period // timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int  # units left right after this call
    retry_after: float  # seconds until this request would be allowed (0.0 when allowed)
    reset_after: float  # seconds until the budget is fully restored


class LimiterUnavailable(Exception):
    """The limiter's store could not be reached and the policy is "closed"."""


class RateLimiter(Protocol):
    async def acquire(self, key: str, rate: Rate, cost: int = 1) -> Decision:
        """Take `cost` units from `key`'s budget if they are all there; cost 0 only looks."""
        ...

    async def forget(self, key: str) -> None:
        """Gives `key`'s whole budget back (a sign-in that succeeded is not a guess)."""
        ...


def gcra(rate: Rate, cost: int, now: float, tat: float | None) -> tuple[Decision, float]:
    """Decide one request at `now` against the stored `tat` (both in microseconds).

    Returns the decision and the TAT to store if it allows. A `cost` above the limit can
    never be met, so it is denied with an infinite `retry_after`.
    """
    period = rate.period_us
    interval = period / rate.limit
    base = now if tat is None else max(tat, now)
    new_tat = base + cost * interval
    allowed = cost <= rate.limit and new_tat - now <= period + SLACK_US
    if allowed:
        fill = new_tat - now
        retry_after = 0.0
    else:
        fill = base - now
        retry_after = math.inf if cost > rate.limit else (new_tat - now - period) / 1e6
    remaining = min(rate.limit, max(0, math.floor((period - fill + SLACK_US) / interval)))
    return Decision(allowed, rate.limit, remaining, retry_after, fill / 1e6), new_tat


def micros(clock: Clock) -> float:
    """The clock's time as gcra() counts it: microseconds since EPOCH."""
    return (clock.now() - EPOCH) / timedelta(microseconds=1)


def check_cost(cost: int) -> None:
    """Every limiter refuses a negative cost the same way."""
    if cost < 0:
        raise ValueError(f"rate limit cost must not be negative, got {cost}")


class MemoryRateLimiter:
    """The embedded limiter, for one process.

    `acquire` never awaits between reading and writing a key, so concurrent tasks on the
    event loop cannot interleave inside it. Keys whose budget is full again carry no
    information and are swept out whenever the table has doubled since the last sweep, so
    memory follows the number of recently active keys and the sweeps cost O(1) amortised.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._tats: dict[str, float] = {}
        self._sweep_at = _MIN_SWEEP

    def __len__(self) -> int:
        """How many keys are tracked (for metrics)."""
        return len(self._tats)

    async def acquire(self, key: str, rate: Rate, cost: int = 1) -> Decision:
        check_cost(cost)
        now = micros(self._clock)
        decision, new_tat = gcra(rate, cost, now, self._tats.get(key))
        if decision.allowed and new_tat > now:
            self._tats[key] = new_tat
            if len(self._tats) > self._sweep_at:
                self._sweep(now)
        return decision

    async def forget(self, key: str) -> None:
        self._tats.pop(key, None)

    def _sweep(self, now: float) -> None:
        self._tats = {key: tat for key, tat in self._tats.items() if tat > now}
        self._sweep_at = max(_MIN_SWEEP, 2 * len(self._tats))
