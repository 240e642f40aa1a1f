"""Alembic environment: one async engine (asyncpg or aiosqlite), run off the caller's thread."""

from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection, make_url

from domains.models import metadata
from migrations import URL_ATTRIBUTE, context_options, run_in_worker, with_connection

config = context.config
if config.config_file_name is not None:  # the alembic CLI; code callers keep their logging
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    # migrations.upgrade() and friends pass the URL in attributes; the CLI takes -x url=...
    url = config.attributes.get(URL_ATTRIBUTE) or context.get_x_argument(as_dictionary=True).get(
        "url"
    )
    if not url:
        raise RuntimeError(
            "no database URL: call migrations.upgrade(url) or run `alembic -x url=... upgrade`"
        )
    return url


def run_offline(url: str) -> None:
    context.configure(
        url=url,
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **context_options(make_url(url).get_backend_name()),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        **context_options(connection.dialect.name),
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline(database_url())
else:
    run_in_worker(with_connection(database_url(), run_on))
