"""Declared reads: a statement and the Row dataclass its rows become, built once at import.

A read's SQL is compiled once per dialect, on first use, and kept on the read with the
order of its parameters and the converters of its columns; any number of keys travel as
one parameter (`any_of`), so one SQL text serves every batch. On PostgreSQL a read runs on
asyncpg's own connection with `fetch(sql, *args)`, so the driver prepares it once per
connection; on SQLite, and inside a unit of work, it runs through SQLAlchemy. Rows are the
slotted dataclasses, not ORM instances. See DEVELOPERS.md, "Reads".
"""

import json
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import fields
from typing import Any, Generic, Protocol, TypeVar

import asyncpg
from sqlalchemy import Boolean, ColumnElement, Select, Table, bindparam, select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import TypeEngine, UserDefinedType

R = TypeVar("R")

Processor = Callable[[Any], Any]
# Told the SQL text of every statement a reader sends (the statement counters).
StatementHook = Callable[[str], None]


def row_columns(row_cls: type, table: Table) -> list[ColumnElement[Any]]:
    """The table's columns in the dataclass's field order, so rows map positionally."""
    return [table.c[field.name] for field in fields(row_cls)]


def select_rows(row_cls: type, table: Table) -> Select[Any]:
    return select(*row_columns(row_cls, table))


def group_by(rows: Iterable[R], attr: str, keys: Sequence[Any]) -> dict[Any, list[R]]:
    """Rows grouped by `attr`, with an empty list for every key that matched nothing."""
    grouped: dict[Any, list[R]] = {key: [] for key in keys}
    for row in rows:
        grouped.setdefault(getattr(row, attr), []).append(row)
    return grouped


class _Keys(UserDefinedType[list[Any]]):
    """Many values as one parameter: an array on PostgreSQL, JSON text on SQLite, each value
    converted as its column converts it (an enum member to its stored string)."""

    cache_ok = True

    def __init__(self, element: TypeEngine[Any]) -> None:
        self.element = element

    def bind_processor(self, dialect: Dialect) -> Processor:
        each = self.element.dialect_impl(dialect).bind_processor(dialect)
        if dialect.name == "sqlite":
            if each is None:
                return lambda keys: json.dumps(list(keys))
            return lambda keys: json.dumps([each(key) for key in keys])
        if each is None:
            return list
        return lambda keys: [each(key) for key in keys]


class AnyOf(ColumnElement[bool]):
    """`column` equals one of the values bound, all at once, to the parameter `name`."""

    __visit_name__ = "any_of"
    _traverse_internals = [  # noqa: RUF012 - SQLAlchemy's traversal spec, read per class
        ("column", InternalTraversal.dp_clauseelement),
        ("keys", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, column: ColumnElement[Any], name: str) -> None:
        self.column = column
        self.keys = bindparam(name, type_=_Keys(column.type))
        self.type = Boolean()

    @property
    def _from_objects(self) -> list[Any]:
        return self.column._from_objects


def any_of(column: ColumnElement[Any], name: str) -> AnyOf:
    """`column IN (...)` for any number of values in one parameter: one SQL text (and one
    prepared statement) for a batch of one key or of a hundred."""
    return AnyOf(column, name)


@compiles(AnyOf, "postgresql")
def _any_of_postgresql(element: AnyOf, compiler: SQLCompiler, **kw: Any) -> str:
    array = element.column.type.compile(dialect=compiler.dialect)
    column, keys = compiler.process(element.column, **kw), compiler.process(element.keys, **kw)
    return f"{column} = ANY(CAST({keys} AS {array}[]))"


@compiles(AnyOf, "sqlite")
def _any_of_sqlite(element: AnyOf, compiler: SQLCompiler, **kw: Any) -> str:
    column, keys = compiler.process(element.column, **kw), compiler.process(element.keys, **kw)
    return f"{column} IN (SELECT value FROM json_each({keys}))"  # noqa: S608 - no values


_PARAMETER = object()  # a bind the caller gives, as opposed to a value fixed in the statement


class Compiled(Generic[R]):
    """A declared statement's SQL for one dialect (a read's, or a unit of work's write in
    domains/writes.py), its parameters in positional order with their bind converters, and
    its columns' result converters (known once the driver has described the statement's
    result columns, which SQLAlchemy's numeric converters ask for)."""

    __slots__ = ("_binds", "_build", "_columns", "_dialect", "converters", "row", "sql")

    def __init__(self, declared: "Declared[R]", dialect: Dialect) -> None:
        compiled = declared.statement.compile(dialect=dialect)
        binds = []
        for name in compiled.positiontup or ():
            bind = compiled.binds[name]
            if bind.expanding:
                raise TypeError(f"{declared}: IN (...) takes a list per call; use any_of()")
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required:
                binds.append((name, process, _PARAMETER))
            else:
                value = bind.effective_value
                binds.append((name, None, process(value) if process else value))
        self.sql: str = compiled.string
        self.row = declared.row
        self._binds = tuple(binds)
        self._columns = [column.type for column in declared.statement.exported_columns]
        self._dialect = dialect
        self.converters: tuple[tuple[int, Processor], ...] | None = None
        self._build: Callable[[Iterable[Sequence[Any]]], list[R]] | None = None

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        arguments = []
        for name, process, fixed in self._binds:
            if fixed is not _PARAMETER:
                arguments.append(fixed)
                continue
            try:
                value = params[name]
            except KeyError:
                raise TypeError(f"the statement needs the parameter {name!r}") from None
            arguments.append(value if process is None else process(value))
        return arguments

    def describe(self, column_oids: Sequence[int]) -> None:
        """Keeps a converter for each column whose values the driver's differ from the
        column type's (an enum's string, say), as SQLAlchemy would convert them."""
        converters = []
        for index, (column_type, oid) in enumerate(zip(self._columns, column_oids, strict=True)):
            impl = column_type.dialect_impl(self._dialect)
            process = impl.result_processor(self._dialect, oid)
            if process is not None:
                converters.append((index, process))
        self.converters = tuple(converters)
        if self.row is not None:
            self._build = rows_builder(self.row, len(self._columns), dict(self.converters))

    def rows(self, records: Iterable[Sequence[Any]]) -> list[R]:
        """The records as rows; known once the statement was described (`describe`)."""
        return self._build(records)  # type: ignore[misc]


_ROWS = """\
def build(records):
    rows = []
    append = rows.append
    for record in records:
{body}    return rows
"""


def rows_builder(
    row: type[R], width: int, converters: Mapping[int, Processor]
) -> Callable[[Iterable[Sequence[Any]]], list[R]]:
    """A function making records of `width` columns into `row`s, each column through its
    converter if it has one: generated once per statement, so a record costs no loop over
    its columns. A frozen slotted dataclass (every Row) is built by filling its slots: its
    generated __init__ sets each field through object.__setattr__, twice the work."""
    names: dict[str, Any] = {"Row": row, "new": object.__new__}
    values = []
    for index in range(width):
        value = f"record[{index}]"
        if index in converters:
            names[f"convert_{index}"] = converters[index]
            value = f"convert_{index}({value})"
        values.append(value)
    if _fills_slots(row):
        lines = ["row = new(Row)"]
        for index, (field, value) in enumerate(zip(fields(row), values, strict=True)):  # type: ignore[arg-type]
            names[f"set_{index}"] = getattr(row, field.name).__set__
            lines.append(f"set_{index}(row, {value})")
        lines.append("append(row)")
    else:
        lines = [f"append(Row({', '.join(values)}))"]
    code = _ROWS.format(body="".join(f"        {line}\n" for line in lines))
    exec(compile(code, f"<rows of {row.__name__}>", "exec"), names)  # noqa: S102 - our own text
    return names["build"]


def _fills_slots(row: type) -> bool:
    """Whether `row` is a slotted dataclass whose __init__ does nothing but set its fields
    (the one dataclasses generates, no __post_init__), so filling its slots is the same."""
    init = row.__dict__.get("__init__")
    return (
        getattr(row, "__dataclass_params__", None) is not None
        and "__slots__" in row.__dict__
        and not hasattr(row, "__post_init__")
        and init is not None
        and init.__code__.co_filename == "<string>"  # dataclasses' own, from its text
    )


class Declared(Protocol[R]):
    """What runs on a reader: a statement declared once, compiled once per dialect."""

    row: type[R] | None
    statement: Any

    def compiled(self, dialect: Dialect) -> "Compiled[R]": ...


def check_row(row: type, statement: Any) -> None:
    """The statement's columns are the dataclass's fields, in order: rows map positionally."""
    selected = [column.key for column in statement.exported_columns]
    wanted = [field.name for field in fields(row)]
    if selected != wanted:
        raise TypeError(f"{row.__name__} has fields {wanted}, the statement selects {selected}")


class DeclaredStatement(Generic[R]):
    """A statement declared once and compiled once per dialect, on first use: what a Read
    and a Write (domains/writes.py) share."""

    __slots__ = ("_compiled", "row", "statement")

    def __init__(self, row: type[R] | None, statement: Any) -> None:
        self.row = row
        self.statement = statement
        self._compiled: dict[str, Compiled[R]] = {}

    def compiled(self, dialect: Dialect) -> Compiled[R]:
        found = self._compiled.get(dialect.name)
        if found is None:
            found = self._compiled[dialect.name] = Compiled(self, dialect)
        return found


class Read(DeclaredStatement[R]):
    """A statement whose rows are `row`s, declared once at import time.

    Parameters are named binds (`bindparam("customer_id")`, `any_of(column, "ids")`), given
    to `reader.fetch(read, customer_id=..., ids=[...])`; the selected columns are the
    dataclass's fields, in order.
    """

    __slots__ = ()
    row: type[R]

    def __init__(self, row: type[R], statement: Select[Any]) -> None:
        check_row(row, statement)
        super().__init__(row, statement)

    def __repr__(self) -> str:
        return f"Read({self.row.__name__})"


class ShapedRead(Generic[R]):
    """A read whose SQL varies with a few switches (which filters apply): `build(shape)`
    gives the statement of a hashable `shape`, declared as a Read on its first use.

    Values are always parameters, never part of the shape, so the variants stay few.
    """

    __slots__ = ("_build", "_reads", "row")

    def __init__(self, row: type[R], build: Callable[[Any], Select[Any]]) -> None:
        self.row = row
        self._build = build
        self._reads: dict[Hashable, Read[R]] = {}

    def of(self, shape: Hashable) -> Read[R]:
        found = self._reads.get(shape)
        if found is None:
            found = self._reads[shape] = Read(self.row, self._build(shape))
        return found


class Reader(Protocol):
    """Runs declared reads on one borrowed connection (`Database.read()`), or on a unit of
    work's (its Writer, domains/writes.py)."""

    async def fetch(self, read: Declared[R], /, **params: Any) -> list[R]: ...


class PreparedReader:
    """Declared reads on an asyncpg connection of the read pool: prepared by the driver
    (its statement cache) on first use per connection, rows converted by `Compiled`."""

    __slots__ = ("_conn", "_dialect", "_hooks")

    def __init__(
        self, conn: asyncpg.Connection, dialect: Dialect, hooks: Collection[StatementHook]
    ) -> None:
        self._conn = conn
        self._dialect = dialect
        self._hooks = hooks

    async def fetch(self, read: Declared[R], /, **params: Any) -> list[R]:
        compiled = read.compiled(self._dialect)
        arguments = compiled.arguments(params)
        self._told(compiled.sql)
        if compiled.converters is None:
            # The first run in this process: the statement describes its result columns.
            prepared = await self._conn.prepare(compiled.sql)
            compiled.describe([attribute.type.oid for attribute in prepared.get_attributes()])
            return compiled.rows(await prepared.fetch(*arguments))
        return compiled.rows(await self._conn.fetch(compiled.sql, *arguments))

    def _told(self, sql: str) -> None:
        for hook in self._hooks:
            hook(sql)


class CoreReader:
    """Declared reads through SQLAlchemy: the embedded SQLite mode's connection, or the
    session of a unit of work that reads what it is about to change."""

    __slots__ = ("_conn",)

    def __init__(self, conn: AsyncConnection | AsyncSession) -> None:
        self._conn = conn

    async def fetch(self, read: Declared[R], /, **params: Any) -> list[R]:
        row: Callable[..., R] = read.row  # type: ignore[assignment] - statements with rows
        return [row(*values) for values in await self._conn.execute(read.statement, params)]
