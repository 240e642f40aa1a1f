"""Alembic migrations, run from code: no alembic.ini needed (that is for the CLI), any cwd.

The functions are synchronous but safe to call from inside a running event loop (test
fixtures, the app's start-up): the async migration always runs on a worker thread.
"""

import asyncio
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

from alembic import command
from alembic.autogenerate.api import AutogenContext
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import TypeDecorator, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

T = TypeVar("T")

SCRIPT_LOCATION = Path(__file__).resolve().parent

# Config.attributes key that carries the database URL from these functions to env.py.
URL_ATTRIBUTE = "database_url"


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(_config(database_url), revision)


def current(database_url: str) -> str | None:
    """The revision the database is at; None when it has never been migrated."""

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    return run_in_worker(with_connection(database_url, read))


def context_options(dialect_name: str) -> dict[str, Any]:
    """Options for MigrationContext.configure, shared by env.py and the schema-drift test.

    Types are compared as the dialect compiles them, so the TypeDecorators (money, UTC time)
    and the VARCHAR-backed enums compare by their DDL (numeric(12,2), timestamptz, varchar(n)).
    SQLite alters tables by copying them, hence batch mode there.
    """
    return {
        "compare_type": True,
        "compare_server_default": True,
        "render_as_batch": dialect_name == "sqlite",
        "render_item": render_item,
    }


def render_item(kind: str, obj: Any, _context: AutogenContext) -> str | Literal[False]:
    """Autogenerate writes the app's TypeDecorators as their SQLAlchemy impl.

    A migration is frozen history: it must not import app code that may change or vanish.
    """
    if kind == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl!r}"
    return False


async def with_connection(database_url: str, work: Callable[[Connection], T]) -> T:
    """Run a synchronous function on one connection of a throwaway async engine."""
    engine = create_async_engine(database_url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(work)
    finally:
        await engine.dispose()


def run_in_worker(coroutine: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on a fresh thread: the caller's thread may already be running a loop."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kabinet-migrations") as worker:
        return worker.submit(asyncio.run, coroutine).result()


def _config(database_url: str) -> Config:
    config = Config()
    # configparser interpolates "%"; the URL travels in attributes, so only the path needs it.
    config.set_main_option("script_location", str(SCRIPT_LOCATION).replace("%", "%%"))
    config.attributes[URL_ATTRIBUTE] = database_url
    return config
