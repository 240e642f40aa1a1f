"""Reading subscriptions: which tariff runs on which contract, and since when."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from domains.customers.models import Subscription, SubscriptionStatus
from domains.reads import Read, Reader, any_of, group_by, select_rows

subscriptions = Subscription.__table__


@dataclass(frozen=True, slots=True)
class SubscriptionRow:
    id: int
    customer_id: int
    contract_id: int
    tariff_id: int
    status: SubscriptionStatus
    started_at: datetime
    ended_at: datetime | None


SUBSCRIPTIONS_BY_ID = Read(
    SubscriptionRow,
    select_rows(SubscriptionRow, subscriptions).where(any_of(subscriptions.c.id, "ids")),
)
SUBSCRIPTIONS_BY_CUSTOMER_ID = Read(
    SubscriptionRow,
    select_rows(SubscriptionRow, subscriptions)
    .where(any_of(subscriptions.c.customer_id, "customer_ids"))
    .order_by(subscriptions.c.started_at, subscriptions.c.id),
)


async def subscriptions_by_customer_ids(
    reader: Reader, customer_ids: Sequence[int]
) -> dict[int, list[SubscriptionRow]]:
    rows = await reader.fetch(SUBSCRIPTIONS_BY_CUSTOMER_ID, customer_ids=customer_ids)
    return group_by(rows, "customer_id", customer_ids)


async def subscriptions_by_ids(reader: Reader, ids: Sequence[int]) -> dict[int, SubscriptionRow]:
    return {row.id: row for row in await reader.fetch(SUBSCRIPTIONS_BY_ID, ids=ids)}
