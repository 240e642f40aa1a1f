"""Reading a subscription's dated tariffs: which tariff from which day, and what is ahead."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from domains.customers.models import SubscriptionTariff
from domains.reads import Read, Reader, any_of, group_by, select_rows

spans = SubscriptionTariff.__table__


@dataclass(frozen=True, slots=True)
class TariffSpanRow:
    id: int
    subscription_id: int
    customer_id: int
    tariff_id: int
    first_day: date


SPANS_BY_SUBSCRIPTION_ID = Read(
    TariffSpanRow,
    select_rows(TariffSpanRow, spans)
    .where(any_of(spans.c.subscription_id, "subscription_ids"))
    .order_by(spans.c.subscription_id, spans.c.first_day),
)


async def spans_by_subscription_ids(
    reader: Reader, subscription_ids: Sequence[int]
) -> dict[int, list[TariffSpanRow]]:
    rows = await reader.fetch(SPANS_BY_SUBSCRIPTION_ID, subscription_ids=subscription_ids)
    return group_by(rows, "subscription_id", subscription_ids)
