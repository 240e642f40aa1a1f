"""Declared reads: one SQL text however many keys, the same typed rows on PostgreSQL (asyncpg's
read pool) and on SQLite (the engine), and values bound, never written into the SQL."""

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import bindparam, insert, select

from domains.billing.invoice import InvoiceFilter, invoice_pages_by_customer_ids
from domains.billing.models import (
    EntrySide,
    Invoice,
    InvoiceStatus,
    LedgerAccount,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Transaction,
)
from domains.billing.payment import PAYMENT_ORDER, payments_by_invoice_ids
from domains.billing.transaction import balance_history_page, ledger_page
from domains.customers.contract import contracts_by_customer_ids
from domains.customers.customer import customers_by_ids, search_customers
from domains.customers.models import (
    Contract,
    ContractStatus,
    Customer,
    Segment,
    Subscription,
    SubscriptionStatus,
    Tariff,
)
from domains.customers.subscription import subscriptions_by_customer_ids
from domains.customers.tariff import list_tariffs
from domains.database import Database
from domains.identity.login import account_by_email
from domains.identity.models import Role, User
from domains.identity.user import USERS_BY_ID, users_by_ids
from domains.keyset import Window
from domains.reads import Read, Reader
from domains.support.ticket import TICKET_ORDER
from resolvers.relay import decode_cursor, encode_cursor
from tests.conftest import migrated_database

JOINED = datetime(2026, 1, 15, 9, 30, 12, 345678, tzinfo=UTC)
MOVEMENT = uuid.UUID("6f1c1c52-0000-4000-8000-000000000001")


def _rows() -> list[tuple[Any, list[dict[str, Any]]]]:
    """The same rows for both databases, with every kind of value the Rows carry."""
    month = [(date(2026, m, 1), date(2026, m, 28)) for m in (1, 2, 3)]
    statuses = [InvoiceStatus.PAID, InvoiceStatus.OVERDUE, InvoiceStatus.ISSUED]
    return [
        (
            User,
            [
                {
                    "id": 1,
                    "email": "alice@example.com",
                    "role": Role.CUSTOMER,
                    "password_hash": "x",
                },
                {
                    "id": 2,
                    "email": "olga@example.com",
                    "role": Role.OPERATOR,
                    "is_active": False,
                    "password_hash": "y",
                },
            ],
        ),
        (
            Customer,
            [
                {
                    "id": 10,
                    "user_id": 1,
                    "contract_num": "K-0010",
                    "full_name": "Alice Liddell",
                    "balance": Decimal("12.34"),
                    "phone": None,
                }
            ],
        ),
        (
            Tariff,
            [
                {
                    "id": 5,
                    "code": "home-100",
                    "name": "Home 100",
                    "segment": Segment.HOME,
                    "monthly_price": Decimal("499.90"),
                    "download_mbps": 100,
                    "upload_mbps": 50,
                },
                {
                    "id": 6,
                    "code": "old-10",
                    "name": "Old 10",
                    "segment": Segment.BUSINESS,
                    "monthly_price": Decimal("99.00"),
                    "download_mbps": 10,
                    "upload_mbps": 10,
                    "is_active": False,
                },
            ],
        ),
        (
            Contract,
            [
                {
                    "id": 20,
                    "customer_id": 10,
                    "tariff_id": 5,
                    "address": "Rabbit Hole 1",
                    "status": ContractStatus.ACTIVE,
                    "start_date": date(2025, 12, 1),
                }
            ],
        ),
        (
            Subscription,
            [
                {
                    "id": 30,
                    "customer_id": 10,
                    "contract_id": 20,
                    "tariff_id": 5,
                    "status": SubscriptionStatus.ACTIVE,
                    "started_at": JOINED,
                }
            ],
        ),
        (
            Invoice,
            [
                {
                    "id": 40 + i,
                    "customer_id": 10,
                    "subscription_id": 30,
                    "number": f"INV-{i}",
                    "period_start": start,
                    "period_end": end,
                    "amount": Decimal("499.90"),
                    "status": status,
                    "issued_at": JOINED,
                    "due_date": end,
                    "created_at": JOINED,
                }
                for i, ((start, end), status) in enumerate(zip(month, statuses, strict=True))
            ],
        ),
        (
            Payment,
            [
                {
                    "id": 50,
                    "invoice_id": 40,
                    "customer_id": 10,
                    "amount": Decimal("499.90"),
                    "method": PaymentMethod.BALANCE,
                    "status": PaymentStatus.SUCCEEDED,
                    "created_at": JOINED,
                }
            ],
        ),
        (
            Transaction,
            [
                {
                    "id": 60 + i,
                    "movement_id": MOVEMENT,
                    "customer_id": 10,
                    "payment_id": 50,
                    "account": LedgerAccount.CUSTOMER_BALANCE,
                    "type": side,
                    "amount": Decimal(amount),
                    "created_at": JOINED,
                }
                for i, (side, amount) in enumerate(
                    [(EntrySide.CREDIT, "600.00"), (EntrySide.DEBIT, "499.90")]
                )
            ],
        ),
    ]


async def _load(db: Database) -> None:
    async with db.transaction() as tx:
        for model, rows in _rows():
            table = model.__table__
            for row in rows:
                at = {"created_at": JOINED} if "created_at" in table.c else {}
                await tx.execute(insert(table).values({**at, **row}))


@pytest_asyncio.fixture
async def both(sqlite_url: str) -> AsyncIterator[tuple[Database, Database]]:
    """The same rows on SQLite and on PostgreSQL."""
    async with migrated_database("kabinet_reads") as pg_url:
        sqlite, postgres = Database(sqlite_url), Database(pg_url)
        try:
            for db in (sqlite, postgres):
                await _load(db)
            yield sqlite, postgres
        finally:
            await sqlite.dispose()
            await postgres.dispose()


async def _everything(reader: Reader) -> list[Any]:
    """Every kind of read: by keys, grouped, paged (partitioned, filtered, after a key,
    backwards), searched, running sums, a join."""
    window = Window(limit=2)
    unpaid = InvoiceFilter(statuses=frozenset({InvoiceStatus.OVERDUE, InvoiceStatus.ISSUED}))
    pages = await invoice_pages_by_customer_ids(reader, [10, 11], InvoiceFilter(), window)
    after = pages[10].rows[-1]
    return [
        await users_by_ids(reader, [1, 2, 3]),
        await customers_by_ids(reader, [10]),
        await list_tariffs(reader, include_archived=True),
        await list_tariffs(reader, include_archived=False),
        await contracts_by_customer_ids(reader, [10, 11]),
        await subscriptions_by_customer_ids(reader, [10]),
        pages,
        await invoice_pages_by_customer_ids(reader, [10], unpaid, window),
        await invoice_pages_by_customer_ids(
            reader,
            [10],
            InvoiceFilter(period_from=date(2026, 2, 1)),
            Window(limit=1, after=(after.period_start, after.id)),
        ),
        await invoice_pages_by_customer_ids(
            reader, [10], InvoiceFilter(), Window(limit=2, backward=True)
        ),
        await payments_by_invoice_ids(reader, [40, 41]),
        await ledger_page(reader, 10, window, account=LedgerAccount.CUSTOMER_BALANCE),
        await balance_history_page(reader, 10, Window(limit=10)),
        await search_customers(reader, "liddell", window),
        await search_customers(reader, "k-00", window),
        await account_by_email(reader, "Alice@Example.com"),
    ]


@pytest.mark.postgres
async def test_the_same_rows_on_postgres_and_sqlite(both: tuple[Database, Database]):
    sqlite, postgres = both
    async with sqlite.read() as reader:
        embedded = await _everything(reader)
    async with postgres.read() as reader:
        served = await _everything(reader)
    assert served == embedded
    for found in (served, embedded):
        users, customers, tariffs, *_ = found
        assert users[1].role is Role.CUSTOMER
        assert 3 not in users
        assert customers[10].balance == Decimal("12.34")
        assert isinstance(customers[10].balance, Decimal)
        assert customers[10].created_at == JOINED
        assert customers[10].created_at.tzinfo is UTC
        assert [t.segment for t in tariffs] == [Segment.BUSINESS, Segment.HOME]
        unpaid = found[7][10].rows
        assert [i.status for i in unpaid] == [InvoiceStatus.ISSUED, InvoiceStatus.OVERDUE]
        assert all(type(i.status) is InvoiceStatus for i in unpaid)
        history = found[12].rows
        assert [entry.balance_after for entry in history] == [Decimal("100.10"), Decimal("600.00")]
        assert found[15].customer_id == 10


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.postgres)])
def demo_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_demo_url")


@pytest_asyncio.fixture
async def demo_db(demo_url: str) -> AsyncIterator[Database]:
    db = Database(demo_url)
    yield db
    await db.dispose()


async def test_one_sql_text_for_any_number_of_keys(demo_db: Database):
    seen: list[str] = []

    def record(sql: str) -> None:
        seen.append(sql)

    demo_db.on_statement.add(record)
    async with demo_db.read() as reader:
        one = await reader.fetch(USERS_BY_ID, ids=[1])
        fifty = await reader.fetch(USERS_BY_ID, ids=list(range(1, 51)))
        none = await reader.fetch(USERS_BY_ID, ids=[])
    assert len(seen) == 3, seen
    assert len(set(seen)) == 1, seen
    assert [row.id for row in one] == [1]
    assert len(fifty) > 1
    assert none == []


async def test_windows_and_filters_bind_their_values(demo_db: Database):
    """Page size, cursor keys and statuses are parameters: one SQL text per shape."""
    seen: list[str] = []

    def record(sql: str) -> None:
        seen.append(sql)

    async with demo_db.read() as reader:
        first = await invoice_pages_by_customer_ids(reader, [1], InvoiceFilter(), Window(3))
        keys = [(row.period_start, row.id) for row in first[1].rows]
        demo_db.on_statement.add(record)
        for limit, after, statuses in [
            (1, keys[0], {InvoiceStatus.PAID}),
            (2, keys[1], {InvoiceStatus.PAID, InvoiceStatus.OVERDUE}),
        ]:
            await invoice_pages_by_customer_ids(
                reader, [1, 2], InvoiceFilter(frozenset(statuses)), Window(limit, after=after)
            )
    assert len(seen) == 2, seen
    assert len(set(seen)) == 1, seen
    assert "paid" not in seen[0].lower()


def test_a_read_selects_its_rows_fields_in_order():
    @dataclass(frozen=True, slots=True)
    class Named:
        email: str
        id: int

    users = User.__table__
    with pytest.raises(TypeError, match="fields"):
        Read(Named, select(users.c.id, users.c.email).where(users.c.id == bindparam("id")))


def test_a_cursor_over_a_utc_time_reads_back_as_its_key():
    """Pages ordered by a timestamptz (payments, tickets) take their own cursors back."""
    key = (datetime(2026, 12, 4, 9, 30, 15, 123456, tzinfo=UTC), 42)
    for ordering in (PAYMENT_ORDER, TICKET_ORDER):
        assert decode_cursor(encode_cursor(key), ordering) == key
