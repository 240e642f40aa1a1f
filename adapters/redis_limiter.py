"""The GCRA limiter in Redis: one Lua script per decision, on the time the gateway sends.

The script mirrors `domains.limits.gcra()` (see that module for why the figures agree and
what a skew between instances' clocks does); the `Decision` comes from `gcra()` on the
time sent and the TAT the script read.
"""

import logging
from datetime import datetime, timedelta
from typing import Literal

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from domains.clock import Clock
from domains.limits import (
    SLACK_US,
    Decision,
    LimiterUnavailable,
    Rate,
    check_cost,
    gcra,
    micros,
)

logger = logging.getLogger(__name__)

WARNING_INTERVAL = timedelta(minutes=1)  # between two "store unreachable" warnings

# Mirrors gcra(): same operations in the same order, so the same doubles. Returns the TAT
# it read (nil when there was none); the Decision is gcra's.
_SCRIPT = """
local period = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local stored = redis.call('GET', KEYS[1])
local base = now
if stored then base = math.max(tonumber(stored), now) end
local new_tat = base + cost * (period / limit)
if cost <= limit and new_tat - now <= period + tonumber(ARGV[5]) and new_tat > now then
  local ttl = math.ceil((new_tat - now) / 1000)
  redis.call('SET', KEYS[1], string.format('%.17g', new_tat), 'PX', ttl)
end
return stored
"""


class RedisRateLimiter:
    """Budgets shared by every gateway instance through Redis; see domains/limits.py."""

    def __init__(
        self,
        redis: Redis,
        clock: Clock,
        *,
        on_failure: Literal["open", "closed"] = "open",
        prefix: str = "kabinet:rl:",
    ) -> None:
        self._redis = redis
        self._clock = clock
        self._script = redis.register_script(_SCRIPT)
        self._on_failure = on_failure
        self._prefix = prefix
        self._last_warning: datetime | None = None
        self._suppressed = 0

    async def acquire(self, key: str, rate: Rate, cost: int = 1) -> Decision:
        check_cost(cost)
        now = micros(self._clock)
        args = [rate.period_us, rate.limit, cost, repr(now), repr(SLACK_US)]
        try:
            tat = await self._script(keys=[self._prefix + key], args=args)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            if self._on_failure == "closed":
                raise LimiterUnavailable(f"rate limiter store unreachable: {exc}") from exc
            self._warn(exc)
            return Decision(True, rate.limit, rate.limit, 0.0, 0.0)
        decision, _ = gcra(rate, cost, now, None if tat is None else float(tat))
        return decision

    async def forget(self, key: str) -> None:
        try:
            await self._redis.delete(self._prefix + key)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            if self._on_failure == "closed":
                raise LimiterUnavailable(f"rate limiter store unreachable: {exc}") from exc
            self._warn(exc)

    def _warn(self, exc: Exception) -> None:
        """One warning a minute, counting the failures it stands for, not one per request."""
        self._suppressed += 1
        now = self._clock.now()
        last = self._last_warning
        # A clock stepped back since the last warning allows the next one at once.
        if last is not None and timedelta(0) <= now - last < WARNING_INTERVAL:
            return
        logger.warning(
            "rate limiter store unreachable, letting requests through (%d failures): %s",
            self._suppressed,
            exc,
        )
        self._last_warning = now
        self._suppressed = 0
