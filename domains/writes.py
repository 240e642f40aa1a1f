"""Declared writes: a unit of work's statements, built once at import, run by the driver.

A money action's statements (its row locks, inserts and updates) are declared like reads
(domains/reads.py): a `Write` is a Core statement with named parameters, compiled once
per dialect, whose RETURNING columns, if any, are a Row dataclass's fields; a `RowsInsert`
writes any number of rows in one statement whose SQL does not change with their number.
`writer(tx)` runs them on the unit of work's own connection: on PostgreSQL the asyncpg
connection under the SQLAlchemy transaction, so each statement is prepared once per
connection and sent without SQLAlchemy's per-execution work; on SQLite the same
declarations through SQLAlchemy, so the embedded mode keeps one code path. Declared reads
run on a writer too (it is a Reader), inside the transaction.
"""

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, fields
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import Table, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.selectable import Select

from domains.reads import (
    CoreReader,
    Declared,
    DeclaredStatement,
    PreparedReader,
    check_row,
)

R = TypeVar("R")

# In a unit of work's `session.info`: its Writer (`Database.transaction` puts it there),
# and whether it wrote rows that wake the embedded relay (`wake_after_commit`).
WRITER = "kabinet.writes.writer"
WAKE_AFTER_COMMIT = "kabinet.writes.wake_after_commit"
# ... and what it sends last, before COMMIT (`before_commit`).
BEFORE_COMMIT = "kabinet.writes.before_commit"
# ... and what it tells outside the database once committed (`after_commit`).
AFTER_COMMIT = "kabinet.writes.after_commit"
# Told of each unit of work as it opens, its Writer in place (the audit log's capture of a
# staff mutation's changes, domains/audit/log.py): set for the calls that want it.
UNIT_OF_WORK_OPENED: ContextVar[Callable[[AsyncSession], None] | None] = ContextVar(
    "kabinet_unit_of_work_opened", default=None
)
_CHANNEL = re.compile(r"[a-z_][a-z0-9_]*")


@dataclass(frozen=True, slots=True)
class Inserted:
    """The row of an INSERT that returns only the new row's id."""

    id: int


class Write(DeclaredStatement[R]):
    """A statement of a unit of work (`SELECT ... FOR UPDATE`, INSERT, UPDATE), declared
    once; `row` names the dataclass its RETURNING (or selected) columns become."""

    __slots__ = ()

    def __init__(self, statement: UpdateBase | Select[Any], row: type[R] | None = None) -> None:
        if row is not None:
            check_row(row, statement)
        elif list(statement.exported_columns):
            raise TypeError("a write that returns columns names the Row they become")
        super().__init__(row, statement)

    def __repr__(self) -> str:
        return f"Write({self.statement.__class__.__name__})"


class RowsInsert(Generic[R]):
    """An INSERT of any number of rows into `columns` of `table`, in one statement.

    On PostgreSQL each column's values travel as one array parameter (`INSERT ... SELECT
    FROM unnest($1, $2, ...)`), so one SQL text, prepared once, takes one row or a
    thousand; on SQLite it is SQLAlchemy's executemany. `notify` names a channel the same
    statement NOTIFYs on PostgreSQL (delivered at commit, once per transaction however many
    times sent); on SQLite the unit of work wakes its Database's `events_committed` instead.

    `skip_conflicts` names the columns of a unique index (`skip_where`, the SQL predicate of
    a partial one): a row that would break it is skipped (ON CONFLICT DO NOTHING), so a
    writer that may find its rows already there (the invoice run) writes only what is new.
    `returning` is the dataclass each written row's columns of those names become, as the
    driver reads them (ids and other plain values: no column type converts them back).
    `shared` names columns whose value is the same for every row of a statement, given once
    per `insert` (one parameter, not an array of copies): a batch's period, say.
    """

    __slots__ = (
        "_sql",
        "columns",
        "notify",
        "returning",
        "shared",
        "skip_conflicts",
        "skip_where",
        "sqlite",
        "table",
    )

    def __init__(
        self,
        table: Table,
        columns: Sequence[str],
        *,
        notify: str | None = None,
        skip_conflicts: Sequence[str] = (),
        skip_where: str | None = None,
        returning: type[R] | None = None,
        shared: Sequence[str] = (),
    ) -> None:
        if notify is not None and not _CHANNEL.fullmatch(notify):
            raise ValueError(f"not a channel name: {notify!r}")
        if notify is not None and returning is not None:
            raise ValueError("a notifying insert returns no rows")
        if skip_where is not None and not skip_conflicts:
            raise ValueError("skip_where narrows skip_conflicts' index")
        self.table = table
        self.columns = tuple(columns)
        self.shared = tuple(shared)
        self.notify = notify
        self.returning = returning
        self.skip_conflicts = tuple(skip_conflicts)
        self.skip_where = skip_where
        core = sqlite.insert(table)
        if skip_conflicts:
            core = core.on_conflict_do_nothing(
                index_elements=list(skip_conflicts),
                index_where=text(skip_where) if skip_where is not None else None,
            )
        if returning is not None:
            core = core.returning(*(table.c[field.name] for field in fields(returning)))
        # SQLite's statement (SQLAlchemy's); PostgreSQL's is written from the same parts.
        self.sqlite = core
        self._sql: dict[str, tuple[str, tuple[Any, ...]]] = {}

    def compiled(self, dialect: Dialect) -> tuple[str, tuple[Any, ...]]:
        """The SQL for `dialect` (PostgreSQL) and each column's bind converter, `columns`
        then `shared`."""
        found = self._sql.get(dialect.name)
        if found is None:
            found = self._sql[dialect.name] = self._compile(dialect)
        return found

    def _compile(self, dialect: Dialect) -> tuple[str, tuple[Any, ...]]:
        preparer = dialect.identifier_preparer
        columns = [self.table.c[name] for name in self.columns]
        shared = [self.table.c[name] for name in self.shared]
        arrays = ", ".join(
            f"CAST(${index} AS {column.type.compile(dialect=dialect)}[])"
            for index, column in enumerate(columns, 1)
        )
        scalars = "".join(
            f", CAST(${index} AS {column.type.compile(dialect=dialect)})"
            for index, column in enumerate(shared, len(columns) + 1)
        )
        names = ", ".join(preparer.quote(column.name) for column in (*columns, *shared))
        table = preparer.format_table(self.table)
        # Identifiers of the schema; the values are parameters.
        sql = (
            f"INSERT INTO {table} ({names})"  # noqa: S608
            f" SELECT given.*{scalars} FROM unnest({arrays}) AS given"
        )
        if self.skip_conflicts:
            index = ", ".join(preparer.quote(name) for name in self.skip_conflicts)
            where = "" if self.skip_where is None else f" WHERE {self.skip_where}"
            sql += f" ON CONFLICT ({index}){where} DO NOTHING"
        if self.returning is not None:
            sql += " RETURNING " + ", ".join(
                preparer.quote(field.name) for field in fields(self.returning)
            )
        if self.notify is not None:
            # A data-modifying WITH runs whatever the outer statement reads.
            sql = f"WITH inserted AS ({sql}) SELECT pg_notify('{self.notify}', '')"
        converters = tuple(
            column.type.dialect_impl(dialect).bind_processor(dialect)
            for column in (*columns, *shared)
        )
        return sql, converters

    def check_shared(self, shared: Mapping[str, Any]) -> None:
        if set(shared) != set(self.shared):
            raise TypeError(f"{self.table.name}: the shared columns are {self.shared}")


class Writer(Protocol):
    """Runs declared statements on a unit of work's connection, in its transaction."""

    async def fetch(self, statement: Declared[R], /, **params: Any) -> list[R]: ...

    async def execute(self, write: Write[Any], /, **params: Any) -> int:
        """Runs a write that returns no rows; the number of rows it changed."""
        ...

    async def insert(
        self, rows: RowsInsert[R], values: Sequence[Mapping[str, Any]], /, **shared: Any
    ) -> list[R]:
        """Writes the rows, `shared` the values of `rows.shared`; the written ones'
        `returning` rows (none without it)."""
        ...


def writer(tx: AsyncSession) -> Writer:
    """The Writer of the unit of work `tx` (`Database.transaction`)."""
    try:
        return tx.info[WRITER]
    except KeyError:
        raise RuntimeError("writer() is for a unit of work of Database.transaction") from None


class DriverWriter(PreparedReader):
    """PostgreSQL: statements on the asyncpg connection under the unit of work's SQLAlchemy
    transaction, prepared by the driver (its statement cache) on first use per connection."""

    __slots__ = ()

    async def execute(self, write: Write[Any], /, **params: Any) -> int:
        compiled = write.compiled(self._dialect)
        arguments = compiled.arguments(params)
        self._told(compiled.sql)
        status: str = await self._conn.execute(compiled.sql, *arguments)
        # "UPDATE 1", "INSERT 0 1": the count is the status's last word.
        return int(status.rsplit(" ", 1)[-1])

    async def insert(
        self, rows: RowsInsert[R], values: Sequence[Mapping[str, Any]], /, **shared: Any
    ) -> list[R]:
        rows.check_shared(shared)
        if not values:
            return []
        sql, converters = rows.compiled(self._dialect)
        arrays: list[Any] = []
        for name, convert in zip(rows.columns, converters, strict=False):
            if convert is None:
                arrays.append([row[name] for row in values])
            else:
                arrays.append([convert(row[name]) for row in values])
        for name, convert in zip(rows.shared, converters[len(rows.columns) :], strict=True):
            arrays.append(shared[name] if convert is None else convert(shared[name]))
        self._told(sql)
        if rows.returning is None:
            await self._conn.execute(sql, *arrays)
            return []
        row = rows.returning
        return [row(*record) for record in await self._conn.fetch(sql, *arrays)]


class CoreWriter(CoreReader):
    """SQLite: the same declarations through the unit of work's SQLAlchemy session."""

    __slots__ = ()

    async def execute(self, write: Write[Any], /, **params: Any) -> int:
        result = await self._conn.execute(write.statement, params)
        return result.rowcount  # type: ignore[attr-defined] - a DML statement's CursorResult

    async def insert(
        self, rows: RowsInsert[R], values: Sequence[Mapping[str, Any]], /, **shared: Any
    ) -> list[R]:
        rows.check_shared(shared)
        if not values:
            return []
        result = await self._conn.execute(rows.sqlite, [{**row, **shared} for row in values])
        if rows.notify is not None:
            wake_after_commit(self._conn)  # type: ignore[arg-type] - a writer's is a session
        if rows.returning is None:
            return []
        row = rows.returning
        return [row(*record) for record in result]


def before_commit(tx: AsyncSession, write: Callable[[AsyncSession], Awaitable[None]]) -> None:
    """Has the unit of work run `write` (once) when its block has succeeded, just before it
    commits: rows gathered along the way (its outbox events) go in one statement."""
    writes: list[Callable[[AsyncSession], Awaitable[None]]] = tx.info.setdefault(BEFORE_COMMIT, [])
    if write not in writes:
        writes.append(write)


def after_commit(tx: AsyncSession, call: Callable[[], None]) -> None:
    """Has the unit of work call `call` once it has committed, never when it rolls back: a
    metric counted from a consumer's handler then counts what the database kept (a handler
    that fails and is tried again counts once)."""
    tx.info.setdefault(AFTER_COMMIT, []).append(call)


def wake_after_commit(tx: AsyncSession) -> None:
    """Has the unit of work call its Database's `events_committed` once it has committed
    (not when it rolls back), so nobody is woken to read what is not there yet."""
    tx.info[WAKE_AFTER_COMMIT] = True
