"""A customer changes their subscription's tariff: an upgrade now, a downgrade at the
period's end (a scheduled change they may cancel), and the worker's pass that makes a
scheduled one the subscription's tariff on its day.

The days are the run's (domains/billing/tariff_days.py): a `subscription_tariffs` row from
the day a tariff takes effect. An upgrade from today bills the old tariff to yesterday and
the new from today, each its own line; a second change the same day replaces the first's
tariff. The subscription's first change also writes the tariff it had from its first day.
`subscriptions.tariff_id` is the tariff in force today, what every reader sees.
"""

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from domains.billing.proration import Period
from domains.clock import SYSTEM_CLOCK, Clock
from domains.customers.errors import (
    DowngradeAtPeriodEnd,
    NoTariffChangeScheduled,
    SubscriptionNotActive,
    TariffChangeScheduled,
    TariffNotAvailable,
)
from domains.customers.events import record
from domains.customers.models import SubscriptionStatus
from domains.customers.subscription import SubscriptionRow, subscriptions
from domains.customers.tariff import TariffRow, tariffs, tariffs_by_ids
from domains.customers.tariff_span import TariffSpanRow, spans
from domains.customers.terms import LifecycleTerms
from domains.database import Database
from domains.errors import Forbidden, NotFound
from domains.identity.models import Role
from domains.identity.viewer import Viewer
from domains.reads import Reader, row_columns, select_rows


class ChangeWhen(StrEnum):
    NOW = "now"
    PERIOD_END = "period_end"


@dataclass(frozen=True, slots=True)
class TariffChange:
    """The subscription as it now is, and the change: from which day, and whether it is
    still ahead (scheduled)."""

    subscription: SubscriptionRow
    tariff_id: int
    effective_from: date
    scheduled: bool


async def lock_subscription(
    session: AsyncSession, viewer: Viewer, subscription_id: int
) -> SubscriptionRow:
    """The subscription, locked for this unit of work; another customer's reads as
    missing."""
    found = await session.execute(
        select_rows(SubscriptionRow, subscriptions)
        .where(subscriptions.c.id == subscription_id)
        .with_for_update()
    )
    row = found.first()
    if row is None or not viewer.may_read_customer(row.customer_id):
        raise NotFound("subscription")
    return SubscriptionRow(*row)


def _may_change_tariffs(viewer: Viewer) -> None:
    if viewer.role is Role.OPERATOR:
        raise Forbidden("operators do not change tariffs; the customer or an admin does")


async def available_tariffs(
    reader: Reader, subscription: SubscriptionRow, catalogue: list[TariffRow]
) -> list[TariffRow]:
    """What the subscription may move to: active tariffs of its tariff's segment and
    currency, other than its own, cheapest first (`catalogue` is the active catalogue)."""
    current = await _tariff(reader, subscription.tariff_id)
    return [
        tariff
        for tariff in catalogue
        if tariff.is_active
        and tariff.id != current.id
        and tariff.segment is current.segment
        and tariff.currency == current.currency
    ]


async def _tariff(reader: Reader, tariff_id: int) -> TariffRow:
    found = (await tariffs_by_ids(reader, [tariff_id])).get(tariff_id)
    if found is None:
        raise NotFound("tariff")
    return found


async def change_tariff(
    db: Database,
    viewer: Viewer,
    subscription_id: int,
    tariff_id: int,
    when: ChangeWhen,
    *,
    terms: LifecycleTerms,
    clock: Clock = SYSTEM_CLOCK,
) -> TariffChange:
    _may_change_tariffs(viewer)
    today = terms.today(clock)
    async with db.transaction() as session:
        subscription = await lock_subscription(session, viewer, subscription_id)
        if subscription.status is not SubscriptionStatus.ACTIVE:
            raise SubscriptionNotActive(f"the subscription is {subscription.status.value}")
        current = await _locked_tariff(session, subscription.tariff_id)
        target = await _locked_tariff(session, tariff_id)
        if (
            not target.is_active
            or target.id == current.id
            or target.segment is not current.segment
            or target.currency != current.currency
        ):
            raise TariffNotAvailable("that tariff is not offered for this subscription")
        if await _ahead(session, subscription.id, today) is not None:
            raise TariffChangeScheduled("a tariff change is already scheduled: cancel it first")
        upgrade = target.monthly_price > current.monthly_price
        if when is ChangeWhen.NOW and not upgrade:
            raise DowngradeAtPeriodEnd("a tariff that is not pricier starts at the period's end")
        effective = today if when is ChangeWhen.NOW else _next_period(today)
        await _keep_first_tariff(session, subscription, terms)
        await session.execute(
            postgresql.insert(spans)
            .values(
                subscription_id=subscription.id,
                customer_id=subscription.customer_id,
                tariff_id=target.id,
                first_day=effective,
                created_at=clock.now(),
            )
            .on_conflict_do_update(
                index_elements=[spans.c.subscription_id, spans.c.first_day],
                set_={"tariff_id": target.id},
            )
        )
        if effective == today:
            subscription = await _set_tariff(session, subscription.id, target.id)
        await record(
            session,
            "tariff.changed",
            subscription.customer_id,
            subscription_id=subscription.id,
            from_tariff_id=current.id,
            to_tariff_id=target.id,
            effective_from=effective,
            scheduled=effective > today,
        )
        return TariffChange(subscription, target.id, effective, effective > today)


async def cancel_tariff_change(
    db: Database,
    viewer: Viewer,
    subscription_id: int,
    *,
    terms: LifecycleTerms,
    clock: Clock = SYSTEM_CLOCK,
) -> SubscriptionRow:
    """Drops the change still ahead: it was never in force, so nothing of it was billed."""
    _may_change_tariffs(viewer)
    today = terms.today(clock)
    async with db.transaction() as session:
        subscription = await lock_subscription(session, viewer, subscription_id)
        ahead = await _ahead(session, subscription.id, today)
        if ahead is None:
            raise NoTariffChangeScheduled("no tariff change is scheduled for this subscription")
        await session.execute(delete(spans).where(spans.c.id == ahead.id))
        await record(
            session,
            "tariff.change_cancelled",
            subscription.customer_id,
            subscription_id=subscription.id,
            from_tariff_id=subscription.tariff_id,
            to_tariff_id=ahead.tariff_id,
            effective_from=ahead.first_day,
            scheduled=True,
        )
        return subscription


async def apply_due_tariff_changes(
    db: Database, *, terms: LifecycleTerms, clock: Clock = SYSTEM_CLOCK
) -> int:
    """Makes each subscription's tariff the one in force today where a scheduled change has
    come: `tariff.changed` for each. The run bills by the dated rows whether or not this
    has run; this keeps what readers see true."""
    today = terms.today(clock)
    latest = (
        select(spans.c.subscription_id, func.max(spans.c.first_day).label("first_day"))
        .where(spans.c.first_day <= today)
        .group_by(spans.c.subscription_id)
        .subquery()
    )
    due = (
        select(subscriptions.c.id, subscriptions.c.tariff_id, spans.c.tariff_id, spans.c.first_day)
        .join(latest, latest.c.subscription_id == subscriptions.c.id)
        .join(
            spans,
            (spans.c.subscription_id == latest.c.subscription_id)
            & (spans.c.first_day == latest.c.first_day),
        )
        .where(subscriptions.c.tariff_id != spans.c.tariff_id)
    )
    async with db.transaction() as session:
        changed = 0
        for subscription_id, before, after, first_day in (await session.execute(due)).all():
            moved = await session.execute(
                update(subscriptions)
                .where(subscriptions.c.id == subscription_id, subscriptions.c.tariff_id == before)
                .values(tariff_id=after)
                .returning(subscriptions.c.customer_id)
            )
            customer_id = moved.scalar()
            if customer_id is None:  # changed meanwhile: the next pass looks again
                continue
            changed += 1
            await record(
                session,
                "tariff.changed",
                customer_id,
                subscription_id=subscription_id,
                from_tariff_id=before,
                to_tariff_id=after,
                effective_from=first_day,
                scheduled=False,
            )
        return changed


def _next_period(today: date) -> date:
    period = Period.of(today)
    return date(period.end.year + period.end.month // 12, period.end.month % 12 + 1, 1)


async def _locked_tariff(session: AsyncSession, tariff_id: int) -> TariffRow:
    found = (
        await session.execute(select_rows(TariffRow, tariffs).where(tariffs.c.id == tariff_id))
    ).first()
    if found is None:
        raise NotFound("tariff")
    return TariffRow(*found)


async def _ahead(session: AsyncSession, subscription_id: int, today: date) -> TariffSpanRow | None:
    found = await session.execute(
        select_rows(TariffSpanRow, spans).where(
            spans.c.subscription_id == subscription_id, spans.c.first_day > today
        )
    )
    row = found.first()
    return None if row is None else TariffSpanRow(*row)


async def _keep_first_tariff(
    session: AsyncSession, subscription: SubscriptionRow, terms: LifecycleTerms
) -> None:
    """The subscription's tariff from its first day, before its first dated change."""
    await session.execute(
        postgresql.insert(spans)
        .values(
            subscription_id=subscription.id,
            customer_id=subscription.customer_id,
            tariff_id=subscription.tariff_id,
            first_day=subscription.started_at.astimezone(terms.zone).date(),
            created_at=subscription.started_at,
        )
        .on_conflict_do_nothing(index_elements=[spans.c.subscription_id, spans.c.first_day])
    )


async def _set_tariff(
    session: AsyncSession, subscription_id: int, tariff_id: int
) -> SubscriptionRow:
    updated = await session.execute(
        update(subscriptions)
        .where(subscriptions.c.id == subscription_id)
        .values(tariff_id=tariff_id)
        .returning(*row_columns(SubscriptionRow, subscriptions))
    )
    return SubscriptionRow(*updated.one())
