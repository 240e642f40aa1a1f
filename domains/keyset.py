"""Keyset pagination, batched: one declared read returns a page for each of many parents."""

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Integer, Select, bindparam, func, select, tuple_

from domains.errors import InvalidInput
from domains.reads import Read, Reader

R = TypeVar("R")

MAX_PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class Window:
    """Which slice of an ordered list: `limit` rows after (or, backwards, before) a key."""

    limit: int
    after: tuple[Any, ...] | None = None
    before: tuple[Any, ...] | None = None
    backward: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.limit <= MAX_PAGE_SIZE:
            raise InvalidInput(f"page size must be between 0 and {MAX_PAGE_SIZE}")


@dataclass(slots=True)
class Page(Generic[R]):
    rows: list[R] = field(default_factory=list)
    has_next: bool = False
    has_previous: bool = False


@dataclass(frozen=True, slots=True)
class Ordering:
    """The sort key (unique, last column a primary key) and its direction."""

    columns: tuple[ColumnElement[Any], ...]
    descending: bool

    def key_of(self, row: Any) -> tuple[Any, ...]:
        return tuple(getattr(row, column.key) for column in self.columns)

    def parse_key(self, values: Sequence[Any]) -> tuple[Any, ...]:
        """Turn a decoded cursor back into typed key values; anything else is bad input."""
        if len(values) != len(self.columns):
            raise InvalidInput("malformed cursor")
        try:
            return tuple(
                _coerce(column.type.python_type, value)
                for column, value in zip(self.columns, values, strict=True)
            )
        except (TypeError, ValueError) as error:
            raise InvalidInput("malformed cursor") from error


def _coerce(python_type: type, value: Any) -> Any:
    if python_type is datetime:
        return datetime.fromisoformat(value)
    if python_type is date:
        return date.fromisoformat(value)
    if python_type is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if python_type is str and isinstance(value, str):
        return value
    raise TypeError(f"cannot read {value!r} as {python_type.__name__}")


class PageRead(Generic[R]):
    """Keyset pages of a read, declared once: `build(shape)` gives the filtered statement
    (its shape says which filters apply; a plain statement has one shape), and each shape
    of it and of the window (after a key? before one? backwards?) is one declared Read.

    With a `partition` column, one statement cuts a page for each of many parents (a
    row_number() per parent); without, the page comes alone. The window's limit and keys
    are parameters (`page_limit`, `after_0`..., `before_0`...), never part of the SQL.
    """

    def __init__(
        self,
        row: type[R],
        build: Select[Any] | Callable[[Any], Select[Any]],
        ordering: Ordering,
        *,
        partition: ColumnElement[Any] | None = None,
    ) -> None:
        self.row = row
        self.ordering = ordering
        self.partition = partition
        self._build = (lambda _shape: build) if isinstance(build, Select) else build
        self._reads: dict[Hashable, Read[R]] = {}

    async def pages(
        self,
        reader: Reader,
        window: Window,
        parents: Sequence[Any],
        *,
        shape: Hashable = None,
        **params: Any,
    ) -> dict[Any, Page[R]]:
        """A page per parent (an empty one for a parent with no rows)."""
        assert self.partition is not None, "pages() cuts a page per parent of a partition"
        rows = await self._fetch(reader, window, shape, params)
        grouped: dict[Any, list[R]] = {parent: [] for parent in parents}
        for row in rows:
            grouped.setdefault(getattr(row, self.partition.key), []).append(row)
        return {parent: _page(rows, window) for parent, rows in grouped.items()}

    async def page(
        self, reader: Reader, window: Window, *, shape: Hashable = None, **params: Any
    ) -> Page[R]:
        assert self.partition is None, "a partitioned read cuts pages()"
        return _page(await self._fetch(reader, window, shape, params), window)

    async def _fetch(
        self, reader: Reader, window: Window, shape: Hashable, params: dict[str, Any]
    ) -> list[R]:
        key = (shape, window.after is not None, window.before is not None, window.backward)
        read = self._reads.get(key)
        if read is None:
            read = self._reads[key] = Read(self.row, self._statement(*key))
        for name, keys in (("after", window.after), ("before", window.before)):
            for index, value in enumerate(keys or ()):
                params[f"{name}_{index}"] = value
        # One extra row tells whether another page exists.
        return await reader.fetch(read, page_limit=window.limit + 1, **params)

    def _statement(self, shape: Hashable, after: bool, before: bool, backward: bool) -> Select[Any]:
        stmt = self._build(shape)
        columns = self.ordering.columns
        key = tuple_(*columns)
        # "After" means further along the list in its own direction.
        forward_is_less = self.ordering.descending
        if after:
            bound = _key_parameters("after", columns)
            stmt = stmt.where(key < bound if forward_is_less else key > bound)
        if before:
            bound = _key_parameters("before", columns)
            stmt = stmt.where(key > bound if forward_is_less else key < bound)
        descending = self.ordering.descending != backward
        order_by = [column.desc() if descending else column.asc() for column in columns]
        limit = bindparam("page_limit", type_=Integer())
        if self.partition is None:
            return stmt.order_by(*order_by).limit(limit)
        rank = func.row_number().over(partition_by=self.partition, order_by=order_by)
        ranked = stmt.add_columns(rank.label("rank")).subquery()
        return (
            select(*[ranked.c[c.key] for c in stmt.selected_columns])
            .where(ranked.c.rank <= limit)
            .order_by(ranked.c[self.partition.key], ranked.c.rank)
        )


def _key_parameters(name: str, columns: Sequence[ColumnElement[Any]]) -> Any:
    return tuple_(
        *(bindparam(f"{name}_{i}", type_=column.type) for i, column in enumerate(columns))
    )


def _page(rows: list[R], window: Window) -> Page[R]:
    more = len(rows) > window.limit
    rows = rows[: window.limit]
    if window.backward:
        rows.reverse()
        return Page(rows, has_next=window.before is not None, has_previous=more)
    return Page(rows, has_next=more, has_previous=window.after is not None)
