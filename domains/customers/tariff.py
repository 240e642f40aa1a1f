"""Reading the tariff catalogue."""

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncConnection

from domains.customers.models import Segment, Tariff
from domains.rows import fetch_rows, select_rows

tariffs = Tariff.__table__


@dataclass(frozen=True, slots=True)
class TariffRow:
    id: int
    code: str
    name: str
    description: str
    segment: Segment
    monthly_price: Decimal
    currency: str
    download_mbps: int
    upload_mbps: int
    is_active: bool


async def tariffs_by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, TariffRow]:
    stmt = select_rows(TariffRow, tariffs).where(tariffs.c.id.in_(ids))
    return {row.id: row for row in await fetch_rows(conn, TariffRow, stmt)}


async def list_tariffs(conn: AsyncConnection, *, include_archived: bool) -> list[TariffRow]:
    """The catalogue, cheapest first; archived tariffs only when staff ask for them."""
    stmt = select_rows(TariffRow, tariffs).order_by(tariffs.c.monthly_price, tariffs.c.id)
    if not include_archived:
        stmt = stmt.where(tariffs.c.is_active.is_(True))
    return await fetch_rows(conn, TariffRow, stmt)
