"""Core reads mapped to slotted dataclasses: the read path skips the ORM identity map."""

from collections.abc import Iterable, Sequence
from dataclasses import fields
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

R = TypeVar("R")


def row_columns(row_cls: type, table: Table) -> list[ColumnElement[Any]]:
    """The table's columns in the dataclass's field order, so rows map positionally."""
    return [table.c[field.name] for field in fields(row_cls)]


def select_rows(row_cls: type, table: Table) -> Select[Any]:
    return select(*row_columns(row_cls, table))


async def fetch_rows(conn: AsyncConnection, row_cls: type[R], stmt: Select[Any]) -> list[R]:
    result = await conn.execute(stmt)
    return [row_cls(*row) for row in result]


def group_by(rows: Iterable[R], attr: str, keys: Sequence[Any]) -> dict[Any, list[R]]:
    """Rows grouped by `attr`, with an empty list for every key that matched nothing."""
    grouped: dict[Any, list[R]] = {key: [] for key in keys}
    for row in rows:
        grouped.setdefault(getattr(row, attr), []).append(row)
    return grouped
