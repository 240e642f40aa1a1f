"""Migrations: head builds exactly the models' schema on PostgreSQL and SQLite, and unwinds.

Each test gets an empty database of its own (the shared `pg_url` one is already migrated).
"""

import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    CheckConstraint,
    Connection,
    MetaData,
    Numeric,
    String,
    UniqueConstraint,
    inspect,
    text,
)
from sqlalchemy.exc import IntegrityError

from domains.models import metadata
from migrations import (
    SCRIPT_LOCATION,
    context_options,
    current,
    downgrade,
    upgrade,
    with_connection,
)
from tests.conftest import scratch_database

HEAD = ScriptDirectory(str(SCRIPT_LOCATION)).get_current_head()

# Per table: the names of its check, unique and foreign-key constraints and of its indexes.
Names = dict[str, dict[str, set[str]]]


@pytest_asyncio.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'migrations.db'}"
        return
    async with scratch_database("kabinet_migrations") as url:
        yield url


def drift(target: MetaData) -> Any:
    """What autogenerate would still have to write to bring the database to `target`."""

    def compare(connection: Connection) -> list[Any]:
        options = {"target_metadata": target, **context_options(connection.dialect.name)}
        return compare_metadata(MigrationContext.configure(connection, opts=options), target)

    return compare


def metadata_names() -> Names:
    names: Names = {}
    for table in metadata.sorted_tables:
        names[table.name] = {
            "check": {str(c.name) for c in table.constraints if isinstance(c, CheckConstraint)},
            "unique": {str(c.name) for c in table.constraints if isinstance(c, UniqueConstraint)},
            "foreign_key": {str(c.name) for c in table.foreign_key_constraints},
            "index": {str(index.name) for index in table.indexes},
            "primary_key": {str(table.primary_key.name)},
        }
    return names


def reflected_names(connection: Connection) -> Names:
    inspector = inspect(connection)
    names: Names = {}
    for table in inspector.get_table_names():
        if table == "alembic_version":
            continue
        names[table] = {
            "check": {c["name"] for c in inspector.get_check_constraints(table)},
            "unique": {c["name"] for c in inspector.get_unique_constraints(table)},
            "foreign_key": {c["name"] for c in inspector.get_foreign_keys(table)},
            # PostgreSQL also lists the indexes behind unique constraints; those are above.
            "index": {
                index["name"]
                for index in inspector.get_indexes(table)
                if "duplicates_constraint" not in index
            },
            "primary_key": {inspector.get_pk_constraint(table)["name"]},
        }
    return names


def leftovers(connection: Connection) -> list[str]:
    """Every schema object apart from Alembic's own version table."""
    if connection.dialect.name == "sqlite":
        query = "SELECT name FROM sqlite_master WHERE tbl_name <> 'alembic_version'"
    else:
        # Tables, indexes, sequences and views of the public schema.
        query = (
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relname NOT LIKE 'alembic_version%'"
        )
    return list(connection.execute(text(query)).scalars())


async def test_head_builds_the_models_schema(
    empty_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the script location comes from the package, not the cwd
    assert current(empty_url) is None

    upgrade(empty_url)  # called inside the test's running event loop

    assert current(empty_url) == HEAD
    assert await with_connection(empty_url, drift(metadata)) == []
    # compare_metadata skips CHECK constraints and matches foreign keys by columns: names too.
    assert await with_connection(empty_url, reflected_names) == metadata_names()


async def test_drift_check_sees_type_changes(empty_url: str) -> None:
    """The comparison is not vacuous: money precision and enum width changes are reported."""
    upgrade(empty_url)
    changed = MetaData(naming_convention=metadata.naming_convention)
    for table in metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["invoices"].c.amount.type = Numeric(14, 2)
    changed.tables["payments"].c.method.type = String(24)

    diffs = await with_connection(empty_url, drift(changed))

    # Column changes come grouped per column, in lists.
    ops = [op for group in diffs for op in (group if isinstance(group, list) else [group])]
    assert {(op[0], op[2], op[3]) for op in ops} == {
        ("modify_type", "invoices", "amount"),
        ("modify_type", "payments", "method"),
    }


async def test_check_constraints_fire(empty_url: str) -> None:
    upgrade(empty_url)
    users, customers, invoices = (metadata.tables[t] for t in ("users", "customers", "invoices"))
    period = {"period_start": date(2026, 1, 1), "period_end": date(2026, 1, 31)}

    def add_customer(connection: Connection) -> int:
        with connection.begin():
            user_id = connection.execute(
                users.insert()
                .values(email="a@example.com", password_hash="x")
                .returning(users.c.id)
            ).scalar_one()
            return connection.execute(
                customers.insert()
                .values(user_id=user_id, contract_num="C-1", full_name="A")
                .returning(customers.c.id)
            ).scalar_one()

    customer_id = await with_connection(empty_url, add_customer)

    def add_invoice(number: str, amount: Decimal) -> Any:
        def insert(connection: Connection) -> None:
            with connection.begin():
                connection.execute(
                    invoices.insert().values(
                        customer_id=customer_id, number=number, amount=amount, **period
                    )
                )

        return insert

    def add_invoice_with_status(connection: Connection) -> None:
        # Raw SQL: the Enum type would refuse the value in Python before the database sees it.
        with connection.begin():
            connection.execute(
                text(
                    "INSERT INTO invoices (customer_id, number, period_start, period_end,"
                    " amount, currency, status, created_at)"
                    " VALUES (:customer, 'INV-3', :start, :end, 1, 'RUB', 'bogus',"
                    " CURRENT_TIMESTAMP)"
                ),
                {"customer": customer_id, "start": period["period_start"], "end": date(2026, 2, 1)},
            )

    with pytest.raises(IntegrityError, match="ck_invoices_amount_positive"):
        await with_connection(empty_url, add_invoice("INV-1", Decimal("-10.00")))
    with pytest.raises(IntegrityError, match="ck_invoices_invoice_status"):
        await with_connection(empty_url, add_invoice_with_status)
    await with_connection(empty_url, add_invoice("INV-2", Decimal("10.00")))


async def test_downgrade_to_base_drops_everything_and_upgrade_rebuilds(empty_url: str) -> None:
    upgrade(empty_url)

    downgrade(empty_url, "base")

    assert current(empty_url) is None
    assert await with_connection(empty_url, leftovers) == []

    upgrade(empty_url)

    assert current(empty_url) == HEAD
    assert await with_connection(empty_url, drift(metadata)) == []


def test_alembic_cli_uses_the_packaged_ini(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    ini = SCRIPT_LOCATION / "alembic.ini"
    subprocess.run(  # noqa: S603 - fixed argv, no shell
        [sys.executable, "-m", "alembic", "-c", str(ini), "-x", f"url={url}", "upgrade", "head"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    assert current(url) == HEAD


# At 0007 an invoice billed one subscription: alice has two, so two invoices per period,
# one of them paid; a third invoice names no subscription. Ids are given, so the
# sequences do not move: the test's later rows give theirs too.
BEFORE_LINES = """
INSERT INTO users (id, email, password_hash, role, is_active, created_at)
    VALUES (1, 'alice@example.com', 'x', 'customer', TRUE, '2026-01-01 00:00:00+00');
INSERT INTO customers (id, user_id, contract_num, full_name, balance, currency, created_at)
    VALUES (1, 1, 'C-1', 'Alice', 0, 'RUB', '2026-01-01 00:00:00+00');
INSERT INTO tariffs (id, code, name, description, segment, monthly_price, currency,
                     download_mbps, upload_mbps, is_active)
    VALUES (1, 'home-100', 'Home 100', '', 'home', 590, 'RUB', 100, 100, TRUE),
           (2, 'home-500', 'Home 500', '', 'home', 790, 'RUB', 500, 500, TRUE);
INSERT INTO contracts (id, customer_id, tariff_id, address, status, start_date)
    VALUES (1, 1, 1, 'A', 'active', '2025-01-01'), (2, 1, 2, 'B', 'active', '2025-01-01');
INSERT INTO subscriptions (id, customer_id, contract_id, tariff_id, status, started_at)
    VALUES (1, 1, 1, 1, 'active', '2025-01-01 00:00:00+00'),
           (2, 1, 2, 2, 'active', '2025-01-01 00:00:00+00');
INSERT INTO invoices (id, customer_id, subscription_id, number, period_start, period_end,
                      amount, currency, status, created_at)
    VALUES (1, 1, 1, 'INV-1', '2026-02-01', '2026-02-28', 590, 'RUB', 'paid', CURRENT_TIMESTAMP),
           (2, 1, 2, 'INV-2', '2026-02-01', '2026-02-28', 790, 'RUB', 'issued', CURRENT_TIMESTAMP),
           (3, 1, NULL, 'INV-3', '2026-02-01', '2026-02-28', 100, 'RUB', 'draft',
            CURRENT_TIMESTAMP);
INSERT INTO payments (id, invoice_id, customer_id, amount, currency, method, status,
                      refunded_amount, created_at)
    VALUES (1, 1, 1, 590, 'RUB', 'card', 'succeeded', 0, CURRENT_TIMESTAMP);
"""
LINE = (
    "INSERT INTO invoice_lines (invoice_id, subscription_id, tariff_id, period_start,"
    " period_end, first_day, last_day, days, unit_price, amount, currency, description)"
    " VALUES (:invoice, :subscription, 1, '2026-02-01', '2026-02-28', :first, '2026-02-28',"
    " :days, 590, :amount, 'RUB', 'again')"
)
WHOLE_FEBRUARY = {"first": date(2026, 2, 1), "days": 28, "amount": 590}

MONTHLY = (
    "INSERT INTO invoices (id, customer_id, number, period_start, period_end, amount,"
    " currency, status, kind, created_at) VALUES (:id, 1, :number, '2026-03-01',"
    " '2026-03-31', 590, 'RUB', 'draft', :kind, CURRENT_TIMESTAMP)"
)


def _run(*statements: tuple[str, dict[str, Any]]) -> Any:
    def run(connection: Connection) -> None:
        with connection.begin():
            for sql, values in statements:
                connection.execute(text(sql), values)

    return run


def _read(sql: str) -> Any:
    def read(connection: Connection) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in connection.execute(text(sql))]

    return read


async def test_invoice_lines_keep_history(empty_url: str) -> None:
    """0008 gives each per-subscription invoice its line and merges nothing; then one
    monthly invoice per customer and period, one line per subscription and period."""
    upgrade(empty_url, "0007")
    await with_connection(
        empty_url, _run(*((sql, {}) for sql in BEFORE_LINES.split(";") if sql.strip()))
    )

    upgrade(empty_url, "0008")

    lines = await with_connection(
        empty_url,
        _read(
            "SELECT invoice_id, subscription_id, tariff_id, period_start, period_end, first_day,"
            " last_day, days, unit_price, amount, description FROM invoice_lines ORDER BY id"
        ),
    )
    feb, end = date(2026, 2, 1), date(2026, 2, 28)
    assert [(*line[:3], *map(str, line[3:7]), *line[7:]) for line in lines] == [
        (1, 1, 1, *map(str, (feb, end, feb, end)), 28, Decimal("590.00"), Decimal("590.00"),
         "Home 100: 2026-02-01 to 2026-02-28, 28 of 28 days"),
        (2, 2, 2, *map(str, (feb, end, feb, end)), 28, Decimal("790.00"), Decimal("790.00"),
         "Home 500: 2026-02-01 to 2026-02-28, 28 of 28 days"),
    ]  # fmt: skip
    kept = await with_connection(
        empty_url, _read("SELECT id, kind, status, amount FROM invoices ORDER BY id")
    )
    assert kept == [
        (1, "single", "paid", Decimal("590.00")),
        (2, "single", "issued", Decimal("790.00")),
        (3, "single", "draft", Decimal("100.00")),
    ]

    with pytest.raises(
        IntegrityError, match=r"uq_invoice_lines_subscription_period|invoice_lines.subscription_id"
    ):
        await with_connection(
            empty_url, _run((LINE, {"invoice": 3, "subscription": 1, **WHOLE_FEBRUARY}))
        )
    # Single invoices are not limited per customer and period; monthly ones are.
    await with_connection(
        empty_url,
        _run(
            (MONTHLY, {"id": 4, "number": "S-1", "kind": "single"}),
            (MONTHLY, {"id": 5, "number": "S-2", "kind": "single"}),
            (MONTHLY, {"id": 6, "number": "M-1", "kind": "monthly"}),
        ),
    )
    with pytest.raises(IntegrityError, match=r"uq_invoices_customer_period|invoices.customer_id"):
        await with_connection(
            empty_url, _run((MONTHLY, {"id": 7, "number": "M-2", "kind": "monthly"}))
        )

    downgrade(empty_url, "0007")

    names = await with_connection(empty_url, reflected_names)
    assert "invoice_lines" not in names
    assert "uq_invoices_subscription_period" in names["invoices"]["unique"]
    assert await with_connection(
        empty_url, _read("SELECT id, status, amount FROM invoices ORDER BY id")
    ) == [
        (1, "paid", Decimal("590.00")),
        (2, "issued", Decimal("790.00")),
        (3, "draft", Decimal("100.00")),
        *((n, "draft", Decimal("590.00")) for n in (4, 5, 6)),
    ]
    assert await with_connection(empty_url, _read("SELECT id, invoice_id FROM payments")) == [
        (1, 1)
    ]


@pytest.mark.parametrize(
    ("first_day", "days", "amount", "check"),
    [
        (date(2026, 1, 31), 28, 590, "ck_invoice_lines_days_within_period"),
        (date(2026, 2, 1), 0, 590, "ck_invoice_lines_days_positive"),
        (date(2026, 2, 1), 28, 0, "ck_invoice_lines_amount_positive"),
    ],
)
async def test_line_check_constraints_fire(
    empty_url: str, first_day: date, days: int, amount: int, check: str
) -> None:
    upgrade(empty_url)
    await with_connection(
        empty_url, _run(*((sql, {}) for sql in BEFORE_LINES.split(";") if sql.strip()))
    )
    with pytest.raises(IntegrityError, match=check):
        await with_connection(
            empty_url,
            _run(
                (
                    LINE,
                    {
                        "invoice": 3,
                        "subscription": 1,
                        "first": first_day,
                        "days": days,
                        "amount": amount,
                    },
                )
            ),
        )
