"""Engine and unit of work for one configured database (PostgreSQL or SQLite)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


class Database:
    """Owns the engine; reads borrow a pooled connection, writes run in one transaction."""

    def __init__(self, url: str, *, pool_size: int = 30, echo: bool = False) -> None:
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        options: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            options["connect_args"] = {"timeout": 30}
        else:
            # Loaders of one request read in parallel, each on its own connection: the pool
            # must hold several per concurrent request, or overflow connections churn.
            # Connections are recycled rather than pinged on every checkout (a round trip
            # each); a connection found dead invalidates the pool and the next one is fresh.
            options.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=300)
        self.engine: AsyncEngine = create_async_engine(parsed, **options)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        # Reads are single statements: autocommit spares each a BEGIN and a ROLLBACK.
        self._reader = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for Core reads, each statement on its own (no transaction)."""
        async with self._reader.connect() as conn:
            yield conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: committed when the block ends, rolled back on any error."""
        async with self._sessions() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()


def conflict_insert(session: AsyncSession, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT of the session's dialect, which has `on_conflict_do_nothing/_update`: both
    databases spell ON CONFLICT alike, but SQLAlchemy builds it per dialect."""
    dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # SQLite ignores foreign keys unless asked; WAL lets readers run beside the writer.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
