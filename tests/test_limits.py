"""The rate limiter: the GCRA arithmetic, the embedded limiter and the Redis one, on real Redis.

Time is a `ManualClock` the tests move: no sleeping, so the figures are exact and no test
depends on how busy the machine is.
"""

import asyncio
import logging
import math
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import pytest_asyncio
import redis.asyncio

from adapters.redis_limiter import RedisRateLimiter
from domains.clock import ManualClock
from domains.limits import (
    _MIN_SWEEP,
    Decision,
    LimiterUnavailable,
    MemoryRateLimiter,
    Rate,
    RateLimiter,
    gcra,
)
from tests.conftest import TEST_REDIS_URL

REDIS_URL = TEST_REDIS_URL
CLOSED_PORT_URL = "redis://127.0.0.1:1/0"
MS = 1_000.0  # microseconds, the unit of gcra()'s clock


def connect(url: str) -> redis.asyncio.Redis:
    # Patient: on a busy machine a slow answer must not pass for an unreachable store.
    return redis.asyncio.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=10)


def redis_limiter(client: redis.asyncio.Redis, clock: ManualClock, prefix: str) -> RedisRateLimiter:
    """A Redis limiter that fails closed: a store failure fails the test, never lets
    requests through unnoticed."""
    return RedisRateLimiter(client, clock, on_failure="closed", prefix=prefix)


@pytest_asyncio.fixture
async def redis_client() -> AsyncIterator[redis.asyncio.Redis]:
    client = connect(REDIS_URL)
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def prefix(redis_client: redis.asyncio.Redis) -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"kabinet:test:rl:{secrets.token_hex(6)}:"
    yield prefix
    keys = [key async for key in redis_client.scan_iter(match=f"{prefix}*")]
    if keys:
        await redis_client.delete(*keys)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(params=["memory", "redis"])
def limiter(request: pytest.FixtureRequest, clock: ManualClock) -> RateLimiter:
    if request.param == "memory":
        return MemoryRateLimiter(clock)
    redis_client = request.getfixturevalue("redis_client")
    return redis_limiter(redis_client, clock, request.getfixturevalue("prefix"))


def ms(milliseconds: float) -> timedelta:
    return timedelta(milliseconds=milliseconds)


# The arithmetic, on a clock the test sets.


def test_gcra_allows_a_burst_of_limit_then_denies() -> None:
    rate = Rate(3, timedelta(seconds=1))  # an interval of 333333.33 µs, not a whole number
    tat = None
    for left in (2, 1, 0):
        decision, tat = gcra(rate, 1, 0.0, tat)
        assert decision.allowed
        assert decision.remaining == left
    decision, _ = gcra(rate, 1, 0.0, tat)
    assert not decision.allowed
    assert decision.remaining == 0
    assert decision.retry_after == pytest.approx(1 / 3)
    assert decision.reset_after == pytest.approx(1.0)


def test_gcra_refills_one_unit_per_interval() -> None:
    rate = Rate(10, timedelta(milliseconds=100))  # one unit every 10 ms
    decision, tat = gcra(rate, 10, 0.0, None)
    assert (decision.allowed, decision.remaining) == (True, 0)
    assert decision.reset_after == pytest.approx(0.1)
    assert not gcra(rate, 1, 9.9 * MS, tat)[0].allowed
    decision, _ = gcra(rate, 1, 10 * MS, tat)
    assert (decision.allowed, decision.remaining) == (True, 0)
    decision, _ = gcra(rate, 1, 35 * MS, tat)
    assert (decision.remaining, decision.reset_after) == (2, pytest.approx(0.075))
    decision, _ = gcra(rate, 1, 500 * MS, tat)  # long idle: full again, never more than full
    assert decision.remaining == 9


def test_gcra_weights_by_cost() -> None:
    rate = Rate(10, timedelta(seconds=1))
    decision, tat = gcra(rate, 5, 0.0, None)
    assert (decision.allowed, decision.remaining) == (True, 5)
    decision, _ = gcra(rate, 6, 0.0, tat)
    assert (decision.allowed, decision.remaining) == (False, 5)
    assert decision.retry_after == pytest.approx(0.1)  # one unit short, one interval
    assert gcra(rate, 5, 0.0, tat)[0].allowed


def test_gcra_never_allows_more_than_the_limit() -> None:
    decision, _ = gcra(Rate(10, timedelta(seconds=1)), 11, 0.0, None)
    assert decision == Decision(False, 10, 10, math.inf, 0.0)


def test_gcra_cost_zero_reports_without_taking() -> None:
    rate = Rate(4, timedelta(seconds=1))
    _, tat = gcra(rate, 3, 0.0, None)
    decision, after = gcra(rate, 0, 0.0, tat)
    assert (decision.allowed, decision.remaining, after) == (True, 1, tat)


def test_rate_and_cost_are_checked() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Rate(0, timedelta(seconds=1))
    with pytest.raises(ValueError, match="positive"):
        Rate(1, timedelta(0))


async def test_negative_cost_is_refused(limiter: RateLimiter) -> None:
    with pytest.raises(ValueError, match="negative"):
        await limiter.acquire("refund", Rate(1, timedelta(seconds=1)), -1)


# Both limiters, on the clock the test moves.


async def test_burst_up_to_limit_then_deny(limiter: RateLimiter) -> None:
    rate = Rate(5, timedelta(seconds=10))
    decisions = [await limiter.acquire("burst", rate) for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0]
    assert all(d.limit == 5 and d.retry_after == 0.0 for d in decisions[:5])
    denied = decisions[-1]
    # Five 2 s intervals fill the 10 s budget: the next one fits once the oldest has
    # passed, so waiting retry_after leaves exactly the other four still to drain.
    assert (denied.retry_after, denied.reset_after) == (2.0, 10.0)
    assert not (await limiter.acquire("burst", rate)).allowed
    assert (await limiter.acquire("other", rate)).remaining == 4  # keys are separate


async def test_budget_refills_over_time(limiter: RateLimiter, clock: ManualClock) -> None:
    rate = Rate(4, timedelta(milliseconds=400))  # one unit every 100 ms
    assert (await limiter.acquire("refill", rate, 4)).remaining == 0
    denied = await limiter.acquire("refill", rate)
    assert not denied.allowed
    clock.advance(ms(250))  # 2.5 units back
    decision = await limiter.acquire("refill", rate, 2)
    assert (decision.allowed, decision.remaining) == (True, 0)
    clock.advance(ms(450))  # more than a period: full again, not more
    decision = await limiter.acquire("refill", rate, 0)
    assert (decision.remaining, decision.reset_after) == (4, 0.0)


async def test_denied_request_costs_nothing(limiter: RateLimiter, clock: ManualClock) -> None:
    rate = Rate(2, timedelta(milliseconds=300))
    await limiter.acquire("deny", rate, 2)
    denied = [await limiter.acquire("deny", rate) for _ in range(20)]
    assert not any(d.allowed for d in denied)
    assert denied[-1].retry_after == 0.15  # as for the first: the refusals took nothing
    clock.advance(timedelta(seconds=denied[-1].retry_after) - ms(1))
    assert not (await limiter.acquire("deny", rate)).allowed
    clock.advance(ms(1))  # what the client is told to wait suffices
    assert (await limiter.acquire("deny", rate)).allowed


async def test_cost_weighting(limiter: RateLimiter) -> None:
    rate = Rate(10, timedelta(seconds=10))
    assert (await limiter.acquire("cost", rate, 5)).remaining == 5
    assert (await limiter.acquire("cost", rate, 3)).remaining == 2
    denied = await limiter.acquire("cost", rate, 3)
    assert (denied.allowed, denied.remaining) == (False, 2)
    assert denied.retry_after == 1.0  # one unit short, one 1 s interval
    assert (await limiter.acquire("cost", rate, 2)).remaining == 0


async def test_cost_above_limit_is_never_allowed(limiter: RateLimiter) -> None:
    rate = Rate(10, timedelta(milliseconds=200))
    decision = await limiter.acquire("huge", rate, 11)
    assert decision == Decision(False, 10, 10, math.inf, 0.0)
    assert (await limiter.acquire("huge", rate, 10)).allowed  # and it took nothing


async def test_concurrent_acquires_allow_exactly_the_limit(limiter: RateLimiter) -> None:
    rate = Rate(10, timedelta(seconds=60))
    decisions = await asyncio.gather(*(limiter.acquire("crowd", rate) for _ in range(50)))
    assert sum(d.allowed for d in decisions) == 10
    assert sorted(d.remaining for d in decisions if d.allowed) == list(range(10))


async def test_memory_limiter_forgets_keys_whose_budget_is_full(clock: ManualClock) -> None:
    limiter = MemoryRateLimiter(clock)
    for i in range(_MIN_SWEEP):
        await limiter.acquire(f"ip-{i}", Rate(5, timedelta(milliseconds=100)))
    assert len(limiter) == _MIN_SWEEP
    clock.advance(ms(150))  # every one of those budgets is full again
    long = Rate(5, timedelta(seconds=60))
    await limiter.acquire("user", long)  # one key too many: the table is swept
    assert len(limiter) == 1
    assert (await limiter.acquire("user", long)).remaining == 3


# Redis: shared, atomic, expiring, and what happens when it is gone.


async def test_two_gateway_instances_share_the_budget(
    redis_client: redis.asyncio.Redis, prefix: str, clock: ManualClock
) -> None:
    other_client = connect(REDIS_URL)
    try:
        first = redis_limiter(redis_client, clock, prefix)
        second = redis_limiter(other_client, clock, prefix)
        rate = Rate(4, timedelta(seconds=10))
        assert (await first.acquire("user:7", rate, 3)).remaining == 1
        assert (await second.acquire("user:7", rate)).remaining == 0
        assert not (await first.acquire("user:7", rate)).allowed
        assert not (await second.acquire("user:7", rate)).allowed
    finally:
        await other_client.aclose()


async def redis_ms(client: redis.asyncio.Redis) -> int:
    """The Redis server's clock, which its key expiry runs on, in Unix milliseconds."""
    seconds, micro = await client.time()
    return seconds * 1000 + micro // 1000


async def test_redis_keys_expire_when_the_budget_is_full(
    redis_client: redis.asyncio.Redis, prefix: str, clock: ManualClock
) -> None:
    """A key lives exactly until its budget is full again, counted on Redis's own clock."""
    limiter = redis_limiter(redis_client, clock, prefix)
    rate = Rate(10, timedelta(seconds=20))  # one unit every 2 s

    async def expiry_after(cost: int) -> tuple[float, int, int]:
        before = await redis_ms(redis_client)
        decision = await limiter.acquire("ttl", rate, cost)
        after = await redis_ms(redis_client)
        expires_at = await redis_client.pexpiretime(f"{prefix}ttl")
        return decision.reset_after, expires_at - before, expires_at - after

    reset_after, most, least = await expiry_after(4)
    assert reset_after == 8.0
    assert least <= 8_000 <= most
    clock.advance(timedelta(seconds=3))  # 5 s of the 8 left; one more unit makes 7
    reset_after, most, least = await expiry_after(1)
    assert reset_after == 7.0
    assert least <= 7_000 <= most
    await limiter.acquire("full", rate, 0)  # a look at a full budget keeps nothing
    assert await redis_client.exists(f"{prefix}full") == 0
    await limiter.acquire("denied", Rate(1, timedelta(seconds=1)), 2)  # nothing taken, nothing kept
    assert await redis_client.exists(f"{prefix}denied") == 0


async def test_memory_and_redis_agree_on_a_scripted_sequence(
    redis_client: redis.asyncio.Redis, prefix: str, clock: ManualClock
) -> None:
    memory, shared = MemoryRateLimiter(clock), redis_limiter(redis_client, clock, prefix)
    rate = Rate(10, timedelta(seconds=1))  # one unit every 100 ms; pauses fall mid-interval
    script = [(0, 3), (0, 5), (0, 3), (0, 2), (0, 1), (0.25, 3), (0, 2), (0, 0), (0.15, 1)]
    script += [(0, 1), (0, 11), (0.6, 7), (0, 1), (0, 0)]
    for pause, cost in script:
        clock.advance(timedelta(seconds=pause))
        mine, theirs = (
            await memory.acquire("seq", rate, cost),
            await shared.acquire("seq", rate, cost),
        )
        assert mine == theirs, (pause, cost)  # the same doubles, to the last bit


async def test_redis_is_atomic_across_connections(prefix: str, clock: ManualClock) -> None:
    """Each instance on its own connection pool, all racing for the same ten units."""
    clients = [connect(REDIS_URL) for _ in range(5)]
    try:
        limiters = [redis_limiter(client, clock, prefix) for client in clients]
        rate = Rate(10, timedelta(seconds=60))
        decisions = await asyncio.gather(
            *(limiters[i % 5].acquire("race", rate) for i in range(50))
        )
        assert sum(d.allowed for d in decisions) == 10
    finally:
        for client in clients:
            await client.aclose()


async def test_redis_down_fails_open_with_one_warning_a_minute(
    caplog: pytest.LogCaptureFixture, clock: ManualClock
) -> None:
    client = connect(CLOSED_PORT_URL)
    try:
        limiter = RedisRateLimiter(client, clock, on_failure="open")
        rate = Rate(1, timedelta(seconds=1))
        with caplog.at_level(logging.WARNING, logger="adapters.redis_limiter"):
            async with asyncio.timeout(10):
                decisions = [await limiter.acquire("down", rate) for _ in range(3)]
                clock.advance(timedelta(seconds=59))
                decisions.append(await limiter.acquire("down", rate))
                clock.advance(timedelta(seconds=1))
                decisions.append(await limiter.acquire("down", rate))
        assert decisions == [Decision(True, 1, 1, 0.0, 0.0)] * 5
        warnings = [r.getMessage() for r in caplog.records if r.name == "adapters.redis_limiter"]
        assert len(warnings) == 2
        assert "unreachable" in warnings[0]
        assert "(4 failures)" in warnings[1]  # the three it was quiet about, and its own
    finally:
        await client.aclose()


async def test_redis_down_fails_closed(clock: ManualClock) -> None:
    client = connect(CLOSED_PORT_URL)
    try:
        limiter = RedisRateLimiter(client, clock, on_failure="closed")
        async with asyncio.timeout(10):
            with pytest.raises(LimiterUnavailable, match="unreachable"):
                await limiter.acquire("down", Rate(1, timedelta(seconds=1)))
    finally:
        await client.aclose()
