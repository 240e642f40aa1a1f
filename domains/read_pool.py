"""The read pool: PostgreSQL connections lent to declared reads for a list operation each."""

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

import asyncpg


class ReadPool:
    """Up to `size` asyncpg connections, opened as reads need them (none at first, so making
    the pool needs no server). Lending an idle one is a list pop, taking it back a list
    append: asyncpg's own pool wraps each checkout in a task and a timer and each return in
    a shielded task, several event-loop turns per read. A read that finds them all lent
    waits its turn, at most `timeout` seconds, then gets TimeoutError. A connection a read
    gives back in doubt (cancelled or broken mid-statement) is closed, not lent again."""

    def __init__(
        self, connect: Callable[[], Awaitable[asyncpg.Connection]], size: int, timeout: float
    ) -> None:
        self._connect = connect
        self._size = size
        self._timeout = timeout
        self._idle: list[asyncpg.Connection] = []
        self._opened = 0  # idle, lent, or being opened
        # Reads waiting their turn: each is handed a connection, or None (open one).
        self._waiting: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        self._closed = False

    async def acquire(self) -> asyncpg.Connection:
        if self._closed:
            raise asyncpg.InterfaceError("the read pool is closed")
        if self._idle:
            return self._idle.pop()
        if self._opened < self._size:
            return await self._open()
        turn: asyncio.Future[asyncpg.Connection | None] = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            async with asyncio.timeout(self._timeout):
                handed = await turn
        except BaseException:
            if turn.done() and not turn.cancelled():  # handed over just as the wait ended
                self._give_back(turn.result())
            raise
        return handed if handed is not None else await self._open()

    def release(self, conn: asyncpg.Connection, *, reusable: bool = True) -> None:
        if reusable and not conn.is_closed() and not self._closed:
            self._give_back(conn)
            return
        conn.terminate()
        self._opened -= 1
        self._give_back(None)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()
        for turn in self._waiting:
            turn.cancel()

    async def _open(self) -> asyncpg.Connection:
        self._opened += 1
        try:
            return await self._connect()
        except BaseException:
            self._opened -= 1
            self._give_back(None)
            raise

    def _give_back(self, conn: asyncpg.Connection | None) -> None:
        """To the first read still waiting, else (a connection) to the idle ones."""
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(conn)
                return
        if conn is not None:
            self._idle.append(conn)
