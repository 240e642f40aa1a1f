"""Staff manage the catalogue (admins): create a tariff, change its price from a day,
archive it. An archived tariff is offered to no one and stays on the subscriptions that
have it, billed as before.

A price change is a `tariff_prices` row from its day (today or later, in the billing time
zone: a day already billed keeps its price); the run bills each day at the price in force on
it. The first change also writes the price the tariff had before, from `BEFORE_ANY_PRICE`.
`tariffs.monthly_price` is the price in force today: set by a change from today, and by the
worker's pass (`apply_due_prices`) on the day a later one comes.
"""

from datetime import date
from decimal import Decimal

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from domains.base import CENT, MAX_MONEY
from domains.clock import SYSTEM_CLOCK, Clock
from domains.customers.errors import TariffArchived, TariffCodeTaken
from domains.customers.events import tariff_price_changed
from domains.customers.models import Segment, TariffPrice
from domains.customers.tariff import TariffRow, tariffs
from domains.customers.terms import LifecycleTerms
from domains.database import Database
from domains.errors import Forbidden, InvalidInput, NotFound
from domains.identity.models import Role
from domains.identity.viewer import Viewer
from domains.reads import row_columns

prices = TariffPrice.__table__

BEFORE_ANY_PRICE = date(1970, 1, 1)
CURRENCIES = ("RUB",)


def _admin(viewer: Viewer) -> None:
    if viewer.role is not Role.ADMIN:
        raise Forbidden("only admins manage tariffs")


def valid_price(price: Decimal) -> Decimal:
    if not (price.is_finite() and 0 < price < MAX_MONEY and price == price.quantize(CENT)):
        raise InvalidInput(f"a monthly price is positive, in whole cents, not {price}")
    return price


async def create_tariff(
    db: Database,
    viewer: Viewer,
    *,
    code: str,
    name: str,
    description: str,
    segment: Segment,
    monthly_price: Decimal,
    currency: str,
    download_mbps: int,
    upload_mbps: int,
) -> TariffRow:
    _admin(viewer)
    code, name = code.strip(), " ".join(name.split())
    if not 1 <= len(code) <= 64 or not code.replace("-", "").replace("_", "").isalnum():
        raise InvalidInput("code is 1 to 64 letters, digits, dashes or underscores")
    if not 1 <= len(name) <= 120:
        raise InvalidInput("name is 1 to 120 characters")
    if len(description) > 2000:
        raise InvalidInput("description is at most 2000 characters")
    if currency not in CURRENCIES:
        raise InvalidInput(f"currency is one of {', '.join(CURRENCIES)}")
    if not (0 < download_mbps <= 100_000 and 0 < upload_mbps <= 100_000):
        raise InvalidInput("speeds are 1 to 100000 Mbit/s")
    valid_price(monthly_price)
    async with db.transaction() as session:
        taken = await session.execute(select(tariffs.c.id).where(tariffs.c.code == code))
        if taken.first() is not None:
            raise TariffCodeTaken(f"a tariff with code {code!r} exists")
        made = await session.execute(
            insert(tariffs)
            .values(
                code=code,
                name=name,
                description=description,
                segment=segment,
                monthly_price=monthly_price,
                currency=currency,
                download_mbps=download_mbps,
                upload_mbps=upload_mbps,
                is_active=True,
            )
            .returning(*row_columns(TariffRow, tariffs))
        )
        return TariffRow(*made.one())


async def change_tariff_price(
    db: Database,
    viewer: Viewer,
    tariff_id: int,
    monthly_price: Decimal,
    effective_from: date,
    *,
    terms: LifecycleTerms,
    clock: Clock = SYSTEM_CLOCK,
) -> TariffRow:
    _admin(viewer)
    valid_price(monthly_price)
    today = terms.today(clock)
    if effective_from < today:
        raise InvalidInput("a price changes from today or later; billed days keep theirs")
    async with db.transaction() as session:
        tariff = await _lock(session, tariff_id)
        now = clock.now()
        await session.execute(
            postgresql.insert(prices)
            .values(
                tariff_id=tariff.id,
                effective_from=BEFORE_ANY_PRICE,
                monthly_price=tariff.monthly_price,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=[prices.c.tariff_id, prices.c.effective_from])
        )
        await session.execute(
            postgresql.insert(prices)
            .values(
                tariff_id=tariff.id,
                effective_from=effective_from,
                monthly_price=monthly_price,
                created_at=now,
            )
            .on_conflict_do_update(
                index_elements=[prices.c.tariff_id, prices.c.effective_from],
                set_={"monthly_price": monthly_price, "created_at": now},
            )
        )
        if effective_from == today:
            tariff = await _set(session, tariff.id, is_active=tariff.is_active, price=monthly_price)
        await tariff_price_changed(
            session,
            tariff_id=tariff.id,
            monthly_price=monthly_price,
            currency=tariff.currency,
            effective_from=effective_from,
        )
        return tariff


async def archive_tariff(db: Database, viewer: Viewer, tariff_id: int) -> TariffRow:
    _admin(viewer)
    async with db.transaction() as session:
        tariff = await _lock(session, tariff_id)
        if not tariff.is_active:
            raise TariffArchived("the tariff is archived already")
        return await _set(session, tariff.id, is_active=False, price=tariff.monthly_price)


async def apply_due_prices(
    db: Database, *, terms: LifecycleTerms, clock: Clock = SYSTEM_CLOCK
) -> int:
    """Sets each tariff's `monthly_price` to its dated price in force today; how many
    changed."""
    today = terms.today(clock)
    in_force = (
        select(prices.c.monthly_price)
        .where(prices.c.tariff_id == tariffs.c.id, prices.c.effective_from <= today)
        .order_by(prices.c.effective_from.desc())
        .limit(1)
        .scalar_subquery()
    )
    dated = select(func.count()).where(
        and_(prices.c.tariff_id == tariffs.c.id, prices.c.effective_from <= today)
    )
    async with db.transaction() as session:
        changed = await session.execute(
            update(tariffs)
            .where(dated.scalar_subquery() > 0, tariffs.c.monthly_price != in_force)
            .values(monthly_price=in_force)
        )
        return changed.rowcount


async def _lock(session: AsyncSession, tariff_id: int) -> TariffRow:
    found = await session.execute(
        select(*row_columns(TariffRow, tariffs)).where(tariffs.c.id == tariff_id).with_for_update()
    )
    row = found.first()
    if row is None:
        raise NotFound("tariff")
    return TariffRow(*row)


async def _set(
    session: AsyncSession, tariff_id: int, *, is_active: bool, price: Decimal
) -> TariffRow:
    updated = await session.execute(
        update(tariffs)
        .where(tariffs.c.id == tariff_id)
        .values(is_active=is_active, monthly_price=price)
        .returning(*row_columns(TariffRow, tariffs))
    )
    return TariffRow(*updated.one())
