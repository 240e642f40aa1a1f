"""The GCRA limiter in Redis: one Lua script per decision, on the Redis server's clock.

The script mirrors `domains.limits.gcra()` (see that module for why the figures agree);
the `Decision` comes from `gcra()` on the clock and TAT the script read.
"""

import logging
import math
import time
from typing import Literal

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from domains.limits import (
    EPOCH,
    SLACK_US,
    Decision,
    LimiterUnavailable,
    Rate,
    check_cost,
    gcra,
)

logger = logging.getLogger(__name__)

WARNING_INTERVAL = 60.0  # seconds between two "store unreachable" warnings

# Mirrors gcra(): same operations in the same order, so the same doubles. Returns the
# server's clock and the TAT it read (false when there was none); the Decision is gcra's.
_SCRIPT = """
local period = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = (tonumber(t[1]) - tonumber(ARGV[4])) * 1000000 + tonumber(t[2])
local stored = redis.call('GET', KEYS[1])
local base = now
if stored then base = math.max(tonumber(stored), now) end
local new_tat = base + cost * (period / limit)
if cost <= limit and new_tat - now <= period + tonumber(ARGV[5]) and new_tat > now then
  local ttl = math.ceil((new_tat - now) / 1000)
  redis.call('SET', KEYS[1], string.format('%.17g', new_tat), 'PX', ttl)
end
return {string.format('%.17g', now), stored}
"""


class RedisRateLimiter:
    """Budgets shared by every gateway instance through Redis; see domains/limits.py."""

    def __init__(
        self,
        redis: Redis,
        *,
        on_failure: Literal["open", "closed"] = "open",
        prefix: str = "kabinet:rl:",
    ) -> None:
        self._redis = redis
        self._script = redis.register_script(_SCRIPT)
        self._on_failure = on_failure
        self._prefix = prefix
        self._last_warning = -math.inf
        self._suppressed = 0

    async def acquire(self, key: str, rate: Rate, cost: int = 1) -> Decision:
        check_cost(cost)
        args = [rate.period_us, rate.limit, cost, EPOCH, repr(SLACK_US)]
        try:
            now, tat = await self._script(keys=[self._prefix + key], args=args)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            if self._on_failure == "closed":
                raise LimiterUnavailable(f"rate limiter store unreachable: {exc}") from exc
            self._warn(exc)
            return Decision(True, rate.limit, rate.limit, 0.0, 0.0)
        decision, _ = gcra(rate, cost, float(now), None if tat is None else float(tat))
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
        clock = time.monotonic()
        if clock - self._last_warning < WARNING_INTERVAL:
            return
        logger.warning(
            "rate limiter store unreachable, letting requests through (%d failures): %s",
            self._suppressed,
            exc,
        )
        self._last_warning = clock
        self._suppressed = 0
