"""Keyset pagination, batched: one statement returns a page for each of many parents."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from domains.errors import InvalidInput
from domains.rows import fetch_rows

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


async def fetch_pages(
    conn: AsyncConnection,
    row_cls: type[R],
    stmt: Select[Any],
    ordering: Ordering,
    window: Window,
    *,
    partition: ColumnElement[Any] | None = None,
    parents: Sequence[Any] = (),
) -> dict[Any, Page[R]]:
    """Run `stmt` (already filtered) once and cut a page per parent value of `partition`.

    Without a partition the result has one page under the key None.
    """
    key = tuple_(*ordering.columns)
    # "After" means further along the list in its own direction.
    forward_is_less = ordering.descending
    if window.after is not None:
        stmt = stmt.where(key < window.after if forward_is_less else key > window.after)
    if window.before is not None:
        stmt = stmt.where(key > window.before if forward_is_less else key < window.before)
    descending = ordering.descending != window.backward
    order_by = [column.desc() if descending else column.asc() for column in ordering.columns]
    wanted = window.limit + 1  # one extra row tells whether another page exists

    if partition is None:
        rows = await fetch_rows(conn, row_cls, stmt.order_by(*order_by).limit(wanted))
        grouped: dict[Any, list[R]] = {None: rows}
    else:
        rank = func.row_number().over(partition_by=partition, order_by=order_by).label("rank")
        ranked = stmt.add_columns(rank).subquery()
        outer = select(*[ranked.c[c.key] for c in stmt.selected_columns]).where(
            ranked.c.rank <= wanted
        )
        outer = outer.order_by(ranked.c[partition.key], ranked.c.rank)
        grouped = {parent: [] for parent in parents}
        for row in await fetch_rows(conn, row_cls, outer):
            grouped.setdefault(getattr(row, partition.key), []).append(row)

    pages: dict[Any, Page[R]] = {}
    for parent, rows in grouped.items():
        more = len(rows) > window.limit
        rows = rows[: window.limit]
        if window.backward:
            rows.reverse()
            pages[parent] = Page(rows, has_next=window.before is not None, has_previous=more)
        else:
            pages[parent] = Page(rows, has_next=more, has_previous=window.after is not None)
    return pages
