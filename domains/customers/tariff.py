"""Reading the tariff catalogue."""

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Select

from domains.customers.models import Segment, Tariff
from domains.reads import Read, Reader, ShapedRead, any_of, select_rows

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


TARIFFS_BY_ID = Read(TariffRow, select_rows(TariffRow, tariffs).where(any_of(tariffs.c.id, "ids")))


def _catalogue(include_archived: bool) -> Select:
    stmt = select_rows(TariffRow, tariffs).order_by(tariffs.c.monthly_price, tariffs.c.id)
    return stmt if include_archived else stmt.where(tariffs.c.is_active.is_(True))


TARIFF_CATALOGUE = ShapedRead(TariffRow, _catalogue)


async def tariffs_by_ids(reader: Reader, ids: Sequence[int]) -> dict[int, TariffRow]:
    return {row.id: row for row in await reader.fetch(TARIFFS_BY_ID, ids=ids)}


async def list_tariffs(reader: Reader, *, include_archived: bool) -> list[TariffRow]:
    """The catalogue, cheapest first; archived tariffs only when staff ask for them."""
    return await reader.fetch(TARIFF_CATALOGUE.of(include_archived))
