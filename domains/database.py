"""Engine, read pool and unit of work for one configured database (PostgreSQL or SQLite)."""

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import Any

import asyncpg
import orjson
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from domains.errors import DomainError
from domains.read_pool import ReadPool
from domains.reads import CoreReader, PreparedReader, Reader, StatementHook
from domains.writes import (
    AFTER_COMMIT,
    BEFORE_COMMIT,
    UNIT_OF_WORK_OPENED,
    WAKE_AFTER_COMMIT,
    WRITER,
    CoreWriter,
    DriverWriter,
    Writer,
)

# PostgreSQL's "too many connections" (max_connections, or only reserved slots left).
TOO_MANY_CONNECTIONS = "53300"


class DatabaseBusy(DomainError):
    """No connection could be had: the pool stayed full for its whole timeout, or PostgreSQL
    refused one (too many clients). The server is saturated, the request is fine: clients
    retry it (503), and nothing of it was written."""

    code = "SERVICE_UNAVAILABLE"

    def __init__(self) -> None:
        super().__init__("the database is busy; try again shortly")


class Database:
    """Owns the engine and the read pool; reads borrow a pooled connection, writes run in
    one transaction.

    On PostgreSQL, declared reads (domains/reads.py) run on a pool of their own (ReadPool),
    `read_pool_size` connections opened as needed; units of work and the other Core
    statements (the relay, demo data) on the engine's pool, which holds `pool_size`
    connections and opens up to `max_overflow` more under a burst. A checkout of either
    waits at most `pool_timeout` seconds, then fails as DatabaseBusy. Processes (API and
    workers alike) fit one PostgreSQL when their number x (pool_size + max_overflow +
    read_pool_size), plus other clients, stays within max_connections less
    superuser_reserved_connections (README, "Connections"). On SQLite everything runs on
    the engine.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 5,
        max_overflow: int = 0,
        read_pool_size: int = 10,
        pool_timeout: float = 5.0,
        echo: bool = False,
    ) -> None:
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        # JSON columns (the outbox's payloads) through orjson: the invoice run writes, and
        # the relay reads, one per invoice.
        options: dict[str, Any] = {
            "echo": echo,
            "json_serializer": _json_text,
            "json_deserializer": orjson.loads,
        }
        if self.is_sqlite:
            options["connect_args"] = {"timeout": 30}
        else:
            # Overflow connections close as soon as they are returned, so under steady load
            # they churn (a connect each): by default the pool is the bound and a request
            # waits for a connection instead; the process's CPU, not its connections, sets
            # throughput.
            # Connections are recycled rather than pinged on every checkout (a round trip
            # each); a connection found dead invalidates the pool and the next one is fresh.
            options.update(
                pool_size=pool_size,
                max_overflow=max_overflow,
                pool_timeout=pool_timeout,
                pool_recycle=300,
            )
        self.engine: AsyncEngine = create_async_engine(parsed, **options)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        # Every statement sent, by the engine or by a declared read, is told to these (the
        # statement counters of /metrics and of the tests).
        self.on_statement: set[StatementHook] = set()
        event.listen(self.engine.sync_engine, "before_cursor_execute", self._engine_statement)
        # Reads are single statements: autocommit spares each a BEGIN and a ROLLBACK.
        self._reader = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # Called after each unit of work marked by `wake_after_commit` commits: the embedded
        # relay waits on it instead of polling (it lives in this process; a relay on
        # PostgreSQL, perhaps in another, LISTENs for record_event's NOTIFY instead).
        self.events_committed: set[Callable[[], None]] = set()
        # The same server and credentials as the engine, in asyncpg's own terms.
        self._read_connect: dict[str, Any] = (
            {} if self.is_sqlite else self.engine.dialect.create_connect_args(parsed)[1]
        )
        self._read_pool = ReadPool(
            lambda: asyncpg.connect(**self._read_connect), read_pool_size, pool_timeout
        )

    def read(self) -> AbstractAsyncContextManager[Reader]:
        """A reader of declared reads on one pooled connection, each statement on its own
        (no transaction): a loader's batch, or a request's lookup, borrows one."""
        if self.is_sqlite:
            return self._core_read()
        return _Borrowed(self)

    @asynccontextmanager
    async def _core_read(self) -> AsyncIterator[Reader]:
        async with self.connect() as conn:
            yield CoreReader(conn)

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """An engine connection for Core statements that return no domain rows (the relay's
        outbox, demo data, checks in tests), each statement on its own (no transaction)."""
        conn = self._reader.connect()
        with _busy_when_refused():
            await conn.start()
        try:
            yield conn
        finally:
            await conn.close()

    async def ping(self) -> None:
        """Both pools lend a connection that answers, or DatabaseBusy (or the error)."""
        async with self.connect() as conn:
            await conn.execute(text("SELECT 1"))
        if self.is_sqlite:
            return
        borrowed = _Borrowed(self)
        async with borrowed:
            self._statement("SELECT 1")
            await borrowed.conn.fetchval("SELECT 1")

    @asynccontextmanager
    async def transaction(
        self, *, isolation_level: str | None = None
    ) -> AsyncIterator[AsyncSession]:
        """One unit of work: committed when the block ends, rolled back on any error.

        Its connection is taken before the block runs, so a unit of work that cannot have
        one fails as DatabaseBusy having done nothing, not halfway through its writes; the
        connection's isolation level can only be chosen then (PostgreSQL's default, READ
        COMMITTED, unless given)."""
        # Not `async with` the session: its close (a shielded task, two event-loop turns)
        # has nothing left to do once the transaction ended, which gave the connection
        # back to the pool; the session holds no objects (Core statements only).
        session = self._sessions()
        async with session.begin():
            with _busy_when_refused():
                conn = await session.connection(
                    execution_options={"isolation_level": isolation_level}
                    if isolation_level
                    else None
                )
                session.info[WRITER] = await self._writer(session, conn)
            opened = UNIT_OF_WORK_OPENED.get()
            if opened is not None:
                opened(session)
            yield session
            # A last write may ask for another (the audit row's event, the outbox's flush).
            while session.info.get(BEFORE_COMMIT):
                for write in session.info.pop(BEFORE_COMMIT):
                    await write(session)
        if session.info.get(WAKE_AFTER_COMMIT):
            for wake in tuple(self.events_committed):
                wake()
        for call in session.info.pop(AFTER_COMMIT, ()):
            call()

    async def _writer(self, session: AsyncSession, conn: AsyncConnection) -> Writer:
        """The unit of work's Writer. On PostgreSQL it sends on the asyncpg connection under
        the session's, so the transaction is begun now (SQLAlchemy's adapter would begin it
        only at its own first statement): BEGIN with the chosen isolation level, as the
        adapter sends it, and the adapter then commits or rolls it back as its own."""
        if self.is_sqlite:
            return CoreWriter(session)
        # Checked out already (session.connection()): no greenlet hop to reach it.
        raw = conn.sync_connection.connection  # type: ignore[union-attr]
        adapted: Any = raw.dbapi_connection
        if adapted._transaction is None:
            await adapted._start_transaction()
        return DriverWriter(raw.driver_connection, self.engine.dialect, self.on_statement)

    async def dispose(self) -> None:
        await self._read_pool.close()
        await self.engine.dispose()

    def _engine_statement(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self._statement(statement)

    def _statement(self, sql: str) -> None:
        for hook in self.on_statement:
            hook(sql)


class _Borrowed:
    """`Database.read()` on PostgreSQL: a connection of the read pool, lent for the block
    and given to it as a reader. A class, not a generator's context manager: a loader's
    batch borrows one, and contextlib's two layers of async generators cost more than the
    pool's own lending."""

    __slots__ = ("_db", "conn")

    def __init__(self, db: Database) -> None:
        self._db = db

    async def __aenter__(self) -> PreparedReader:
        db = self._db
        with _busy_when_refused():
            self.conn: asyncpg.Connection = await db._read_pool.acquire()
        return PreparedReader(self.conn, db.engine.dialect, db.on_statement)

    async def __aexit__(self, error_type: type[BaseException] | None, *_: object) -> None:
        # A statement's own error, or the caller's after its reads: the connection finished
        # its exchange and is idle. Cancelled or broken mid-statement: not to be trusted.
        reusable = error_type is None or issubclass(
            error_type, (DomainError, asyncpg.PostgresError)
        )
        self._db._read_pool.release(self.conn, reusable=reusable)


def _json_text(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


@contextmanager
def _busy_when_refused() -> Iterator[None]:
    """Taking a connection from either pool: a full pool's timeout, or PostgreSQL's refusal,
    is DatabaseBusy."""
    try:
        yield
    except (PoolTimeout, TimeoutError):
        raise DatabaseBusy() from None
    except asyncpg.PostgresError as error:
        if error.sqlstate != TOO_MANY_CONNECTIONS:
            raise
        raise DatabaseBusy() from error
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) != TOO_MANY_CONNECTIONS:
            raise
        raise DatabaseBusy() from error


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # SQLite ignores foreign keys unless asked; WAL lets readers run beside the writer.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
