"""The read pool lends idle connections, makes reads wait their turn, and drops doubtful ones."""

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio

from domains.read_pool import ReadPool

pytestmark = pytest.mark.postgres


@pytest_asyncio.fixture
async def pool(pg_url: str) -> AsyncIterator[ReadPool]:
    dsn = pg_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    made = ReadPool(lambda: asyncpg.connect(dsn), size=1, timeout=0.5)
    yield made
    await made.close()


async def _backend(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT pg_backend_pid()")


async def test_an_idle_connection_is_lent_again(pool: ReadPool):
    first = await pool.acquire()
    pid = await _backend(first)
    pool.release(first)
    again = await pool.acquire()
    assert again is first
    assert await _backend(again) == pid
    pool.release(again)


async def test_a_read_waits_for_the_one_lent(pool: ReadPool):
    held = await pool.acquire()
    waiting = asyncio.ensure_future(pool.acquire())
    await asyncio.sleep(0)
    assert not waiting.done()
    pool.release(held)
    assert await waiting is held
    pool.release(held)


async def test_a_read_that_waits_too_long_gives_up(pool: ReadPool):
    held = await pool.acquire()
    with pytest.raises(TimeoutError):
        await pool.acquire()
    pool.release(held)
    pool.release(await pool.acquire())  # the one given up on took nothing with it


async def test_a_connection_cancelled_mid_statement_is_not_lent_again(pool: ReadPool):
    conn = await pool.acquire()
    pid = await _backend(conn)
    sleeping = asyncio.ensure_future(conn.fetchval("SELECT pg_sleep(30)"))
    await asyncio.sleep(0.1)
    sleeping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sleeping
    pool.release(conn, reusable=False)
    fresh = await pool.acquire()
    assert fresh is not conn
    assert await _backend(fresh) != pid
    pool.release(fresh)
