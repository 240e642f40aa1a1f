"""Reading subscriptions: which tariff runs on which contract, and since when."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from domains.customers.models import Subscription, SubscriptionStatus
from domains.rows import fetch_rows, group_by, select_rows

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


async def subscriptions_by_customer_ids(
    conn: AsyncConnection, customer_ids: Sequence[int]
) -> dict[int, list[SubscriptionRow]]:
    stmt = (
        select_rows(SubscriptionRow, subscriptions)
        .where(subscriptions.c.customer_id.in_(customer_ids))
        .order_by(subscriptions.c.started_at, subscriptions.c.id)
    )
    return group_by(await fetch_rows(conn, SubscriptionRow, stmt), "customer_id", customer_ids)


async def subscriptions_by_ids(
    conn: AsyncConnection, ids: Sequence[int]
) -> dict[int, SubscriptionRow]:
    stmt = select_rows(SubscriptionRow, subscriptions).where(subscriptions.c.id.in_(ids))
    return {row.id: row for row in await fetch_rows(conn, SubscriptionRow, stmt)}
