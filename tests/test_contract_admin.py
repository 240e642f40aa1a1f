"""createContract, updateContract, createSubscription (admins): a structured service
address and its display form, a subscription the monthly run bills from its first day;
refusals write nothing (SQLite, PostgreSQL, the injected clock)."""

from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from domains.billing.autopay import AutopayMode
from domains.billing.invoice_run import run_invoices
from domains.billing.models import InvoiceLine
from domains.billing.proration import Period
from domains.billing.reconcile import reconcile
from domains.clock import ManualClock
from domains.customers.contract_admin import (
    ServiceAddress,
    create_contract,
    create_subscription,
    update_contract,
)
from domains.customers.customer import search_customers
from domains.customers.errors import TariffArchived
from domains.customers.models import ContractStatus
from domains.customers.terms import LifecycleTerms
from domains.database import Database
from domains.errors import Forbidden, InvalidInput, NotFound
from domains.identity.models import Role
from domains.identity.viewer import Viewer
from domains.keyset import Window
from domains.models import metadata
from tests.test_invoice_run import make_tariff
from tests.test_payments import insert_customer

MOSCOW = ZoneInfo("Europe/Moscow")
TERMS = LifecycleTerms(MOSCOW)
ADMIN = Viewer(1, Role.ADMIN)
# 10 January 2026, noon in Moscow.
NOW = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)
TVERSKAYA = ServiceAddress(
    region=" Москва ", city="Москва", street="Тверская  улица", house="7", postal_code="125009"
)


async def _customer(db: Database) -> int:
    async with db.transaction() as session:
        _, customer_id = await insert_customer(session, "prov", NOW)
    return customer_id


async def _counts(db: Database) -> dict[str, int]:
    async with db.connect() as conn:
        return {
            name: (
                await conn.execute(select(func.count()).select_from(metadata.tables[name]))
            ).scalar_one()
            for name in ("contracts", "subscriptions")
        }


async def test_a_provisioned_subscription_is_billed_from_its_first_day(db: Database) -> None:
    customer_id = await _customer(db)
    tariff_id = await make_tariff(db, "310.00")
    clock = ManualClock(NOW)
    contract = await create_contract(
        db,
        ADMIN,
        customer_id=customer_id,
        tariff_id=tariff_id,
        starts_on=date(2026, 1, 15),
        address=TVERSKAYA,
        terms=TERMS,
        clock=clock,
    )
    assert contract.address == "125009, Москва, Москва, Тверская улица, 7"
    assert (contract.street, contract.flat, contract.status) == (
        "Тверская улица",
        None,
        ContractStatus.ACTIVE,
    )
    moved = await update_contract(
        db,
        ADMIN,
        contract.id,
        address=ServiceAddress("Москва", "Москва", "Арбат", "12", "119002", flat="5"),
    )
    assert moved.address == "119002, Москва, Москва, Арбат, 12, кв. 5"
    subscription = await create_subscription(
        db,
        ADMIN,
        contract_id=contract.id,
        tariff_id=tariff_id,
        starts_on=date(2026, 1, 15),
        terms=TERMS,
        clock=clock,
    )
    # Midnight in Moscow is 21:00 UTC the day before.
    assert subscription.started_at == datetime(2026, 1, 14, 21, 0, tzinfo=UTC)
    await run_invoices(
        db,
        Period(date(2026, 1, 1)),
        zone=MOSCOW,
        due_days=10,
        autopay=AutopayMode.OFF,
        clock=ManualClock(datetime(2026, 2, 1, 0, 0, tzinfo=UTC)),
    )
    async with db.connect() as conn:
        [line] = (
            await conn.execute(
                select(InvoiceLine).where(InvoiceLine.subscription_id == subscription.id)
            )
        ).all()
    # 15 to 31 January: 17 of 31 days of 310.00.
    assert (line.days, line.amount) == (17, Decimal("170.00"))
    assert await reconcile(db) == []


@pytest.mark.parametrize(
    "address",
    [
        ServiceAddress("Москва", "Москва", "Тверская", "7", "12500"),
        ServiceAddress("Москва", "Москва", "  ", "7", "125009"),
        ServiceAddress("Москва", "", "Тверская", "7", "125009"),
        ServiceAddress("Москва", "Москва", "Тверская", "7" * 21, "125009"),
    ],
)
async def test_a_bad_address_writes_nothing(db: Database, address: ServiceAddress) -> None:
    customer_id = await _customer(db)
    tariff_id = await make_tariff(db, "310.00")
    before = await _counts(db)
    with pytest.raises(InvalidInput):
        await create_contract(
            db,
            ADMIN,
            customer_id=customer_id,
            tariff_id=tariff_id,
            starts_on=date(2026, 1, 15),
            address=address,
            terms=TERMS,
            clock=ManualClock(NOW),
        )
    assert await _counts(db) == before


async def test_refusals_write_nothing(db: Database) -> None:
    customer_id = await _customer(db)
    tariff_id = await make_tariff(db, "310.00")
    clock = ManualClock(NOW)
    contract = await create_contract(
        db,
        ADMIN,
        customer_id=customer_id,
        tariff_id=tariff_id,
        starts_on=date(2026, 1, 10),
        address=TVERSKAYA,
        terms=TERMS,
        clock=clock,
    )
    async with db.transaction() as tx:
        await tx.execute(
            metadata.tables["tariffs"]
            .update()
            .where(metadata.tables["tariffs"].c.id == tariff_id)
            .values(is_active=False)
        )
    active = await make_tariff(db, "500.00")
    before = await _counts(db)
    common = {"terms": TERMS, "clock": clock}
    with pytest.raises(InvalidInput):  # a day already gone
        await create_subscription(
            db,
            ADMIN,
            contract_id=contract.id,
            tariff_id=active,
            starts_on=date(2026, 1, 9),
            **common,
        )
    with pytest.raises(TariffArchived):
        await create_subscription(
            db,
            ADMIN,
            contract_id=contract.id,
            tariff_id=tariff_id,
            starts_on=date(2026, 1, 10),
            **common,
        )
    with pytest.raises(NotFound):
        await create_subscription(
            db,
            ADMIN,
            contract_id=contract.id + 99,
            tariff_id=active,
            starts_on=date(2026, 1, 10),
            **common,
        )
    with pytest.raises(NotFound):
        await create_contract(
            db,
            ADMIN,
            customer_id=customer_id + 99,
            tariff_id=active,
            starts_on=date(2026, 1, 10),
            address=TVERSKAYA,
            **common,
        )
    with pytest.raises(Forbidden):
        await create_subscription(
            db,
            Viewer(2, Role.OPERATOR),
            contract_id=contract.id,
            tariff_id=active,
            starts_on=date(2026, 1, 10),
            **common,
        )
    assert await _counts(db) == before


async def test_staff_find_customers_by_phone_and_service_address(db: Database) -> None:
    customer_id = await _customer(db)
    other = await _customer(db)
    async with db.transaction() as tx:
        table = metadata.tables["customers"]
        await tx.execute(
            table.update().where(table.c.id == customer_id).values(phone="+79161234567")
        )
        await tx.execute(table.update().where(table.c.id == other).values(phone="+74950000000"))
    tariff_id = await make_tariff(db, "310.00")
    await create_contract(
        db,
        ADMIN,
        customer_id=customer_id,
        tariff_id=tariff_id,
        starts_on=date(2026, 1, 10),
        address=ServiceAddress("Moscow", "Moscow", "Tverskaya", "7", "125009", flat="12"),
        terms=TERMS,
        clock=ManualClock(NOW),
    )

    async def found(term: str) -> list[int]:
        async with db.read() as reader:
            page = await search_customers(reader, term, Window(limit=10))
        return [row.id for row in page.rows]

    assert await found("+7 (916) 123-45") == [customer_id]
    assert await found("9161234567") == [customer_id]
    assert await found("tverskaya") == [customer_id]
    assert await found("125009") == [customer_id]
    assert await found("+7") == [customer_id, other]
    assert await found("arbat") == []
