"""Voluntary pauses ("добровольная блокировка"): a customer (or an operator on their
behalf) pauses a subscription from a day until a day, within KABINET_PAUSE_MIN_DAYS for one
pause and KABINET_PAUSE_MAX_DAYS paused in a calendar year; resumed by the worker on
`until`, or early by the customer.

The paused days are `first_day` up to the day before `until` (or before `resumed_on`, when
resumed early): the run leaves them unbilled (domains/billing/tariff_days.py), and a year's
limit counts them, split at the new year. A pause starting today pauses at once; one ahead
is started by the worker's pass on its day (`subscription.paused`), which also ends those
whose `until` has come (`subscription.resumed`). Resuming a pause not yet begun drops it
(its `resumed_on` is its first day: no day paused).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domains.clock import SYSTEM_CLOCK, Clock
from domains.customers.errors import (
    NotPaused,
    PauseLimit,
    PauseOverlaps,
    PauseTooShort,
    SubscriptionNotActive,
)
from domains.customers.events import record
from domains.customers.models import SubscriptionPause, SubscriptionStatus
from domains.customers.subscription import SubscriptionRow, subscriptions
from domains.customers.tariff_change import lock_subscription
from domains.customers.terms import LifecycleTerms
from domains.database import Database
from domains.errors import InvalidInput
from domains.identity.viewer import Viewer
from domains.reads import Read, Reader, any_of, group_by, row_columns, select_rows

pauses = SubscriptionPause.__table__


@dataclass(frozen=True, slots=True)
class PauseRow:
    id: int
    subscription_id: int
    customer_id: int
    first_day: date
    until: date
    resumed_on: date | None

    @property
    def ends(self) -> date:
        """The first day not paused."""
        return self.resumed_on or self.until


PAUSES_BY_SUBSCRIPTION_ID = Read(
    PauseRow,
    select_rows(PauseRow, pauses)
    .where(any_of(pauses.c.subscription_id, "subscription_ids"))
    .order_by(pauses.c.subscription_id, pauses.c.first_day),
)


async def pauses_by_subscription_ids(
    reader: Reader, subscription_ids: Sequence[int]
) -> dict[int, list[PauseRow]]:
    rows = await reader.fetch(PAUSES_BY_SUBSCRIPTION_ID, subscription_ids=subscription_ids)
    return group_by(rows, "subscription_id", subscription_ids)


@dataclass(frozen=True, slots=True)
class PauseOutcome:
    subscription: SubscriptionRow
    pause: PauseRow


async def pause_subscription(
    db: Database,
    viewer: Viewer,
    subscription_id: int,
    first_day: date,
    until: date,
    *,
    terms: LifecycleTerms,
    clock: Clock = SYSTEM_CLOCK,
) -> PauseOutcome:
    today = terms.today(clock)
    if first_day < today:
        raise InvalidInput("a pause starts today or later")
    if until <= first_day:
        raise InvalidInput("a pause ends (until) after it starts (from)")
    days = (until - first_day).days
    if days < terms.pause_min_days:
        raise PauseTooShort(f"a pause is at least {terms.pause_min_days} days, not {days}")
    async with db.transaction() as session:
        subscription = await lock_subscription(session, viewer, subscription_id)
        if subscription.status not in (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAUSED):
            raise SubscriptionNotActive(f"the subscription is {subscription.status.value}")
        taken = await _pauses(session, subscription.id)
        if any(p.first_day < until and first_day < p.ends for p in taken):
            raise PauseOverlaps("the subscription is already paused on some of those days")
        for year in range(first_day.year, until.year + 1):
            used = sum(_days_in_year(p.first_day, p.ends, year) for p in taken)
            asked = _days_in_year(first_day, until, year)
            if asked and used + asked > terms.pause_max_days:
                raise PauseLimit(
                    f"at most {terms.pause_max_days} days paused in {year}:"
                    f" {used} taken, {asked} asked"
                )
        made = await session.execute(
            insert(pauses)
            .values(
                subscription_id=subscription.id,
                customer_id=subscription.customer_id,
                first_day=first_day,
                until=until,
                created_by=viewer.user_id,
                created_at=clock.now(),
            )
            .returning(*row_columns(PauseRow, pauses))
        )
        pause = PauseRow(*made.one())
        if first_day == today:
            subscription = await _begin(session, subscription, pause)
        return PauseOutcome(subscription, pause)


async def resume_subscription(
    db: Database,
    viewer: Viewer,
    subscription_id: int,
    *,
    terms: LifecycleTerms,
    clock: Clock = SYSTEM_CLOCK,
) -> PauseOutcome:
    """Ends the running pause today (today is billed again), or drops the next one ahead."""
    today = terms.today(clock)
    async with db.transaction() as session:
        subscription = await lock_subscription(session, viewer, subscription_id)
        open_ = [p for p in await _pauses(session, subscription.id) if p.ends > today]
        if not open_:
            raise NotPaused("the subscription has no pause running or ahead")
        pause = open_[0]
        resumed_on = max(today, pause.first_day)
        ended = await session.execute(
            update(pauses)
            .where(pauses.c.id == pause.id)
            .values(resumed_on=resumed_on)
            .returning(*row_columns(PauseRow, pauses))
        )
        pause = PauseRow(*ended.one())
        if subscription.status is SubscriptionStatus.PAUSED and pause.first_day <= today:
            subscription = await _end(session, subscription, pause, today)
        return PauseOutcome(subscription, pause)


async def apply_due_pauses(
    db: Database, *, terms: LifecycleTerms, clock: Clock = SYSTEM_CLOCK
) -> tuple[int, int]:
    """Pauses active subscriptions whose pause has begun, resumes paused ones none covers
    today; (paused, resumed)."""
    today = terms.today(clock)
    covering = and_(
        pauses.c.subscription_id == subscriptions.c.id,
        pauses.c.first_day <= today,
        func.coalesce(pauses.c.resumed_on, pauses.c.until) > today,
    )
    async with db.transaction() as session:
        starting = await session.execute(
            select(*row_columns(SubscriptionRow, subscriptions), *row_columns(PauseRow, pauses))
            .join(pauses, covering)
            .where(subscriptions.c.status == SubscriptionStatus.ACTIVE)
            .with_for_update(of=subscriptions, skip_locked=True)
        )
        width = len(row_columns(SubscriptionRow, subscriptions))
        begun = 0
        for row in starting.all():
            await _begin(session, SubscriptionRow(*row[:width]), PauseRow(*row[width:]))
            begun += 1
        ending = await session.execute(
            select_rows(SubscriptionRow, subscriptions)
            .where(
                subscriptions.c.status == SubscriptionStatus.PAUSED,
                ~select(pauses.c.id).where(covering).exists(),
            )
            .with_for_update(skip_locked=True)
        )
        resumed = 0
        for row in ending.all():
            subscription = SubscriptionRow(*row)
            last = [p for p in await _pauses(session, subscription.id) if p.first_day <= today]
            await _end(session, subscription, last[-1] if last else None, today)
            resumed += 1
        return begun, resumed


async def _pauses(session: AsyncSession, subscription_id: int) -> list[PauseRow]:
    found = await session.execute(
        select_rows(PauseRow, pauses)
        .where(pauses.c.subscription_id == subscription_id)
        .order_by(pauses.c.first_day)
    )
    return [PauseRow(*row) for row in found]


def _days_in_year(first: date, ends: date, year: int) -> int:
    """Days of `first` up to the day before `ends` that fall in `year`."""
    start, stop = max(first, date(year, 1, 1)), min(ends, date(year + 1, 1, 1))
    return max(0, (stop - start).days)


async def _begin(
    session: AsyncSession, subscription: SubscriptionRow, pause: PauseRow
) -> SubscriptionRow:
    updated = await _status(session, subscription.id, SubscriptionStatus.PAUSED)
    await record(
        session,
        "subscription.paused",
        subscription.customer_id,
        subscription_id=subscription.id,
        pause_id=pause.id,
        first_day=pause.first_day,
        until=pause.until,
    )
    return updated


async def _end(
    session: AsyncSession, subscription: SubscriptionRow, pause: PauseRow | None, today: date
) -> SubscriptionRow:
    updated = await _status(session, subscription.id, SubscriptionStatus.ACTIVE)
    await record(
        session,
        "subscription.resumed",
        subscription.customer_id,
        subscription_id=subscription.id,
        reason="pause",
        pause_id=None if pause is None else pause.id,
        resumed_on=today,
    )
    return updated


async def _status(
    session: AsyncSession, subscription_id: int, status: SubscriptionStatus
) -> SubscriptionRow:
    updated = await session.execute(
        update(subscriptions)
        .where(subscriptions.c.id == subscription_id)
        .values(status=status)
        .returning(*row_columns(SubscriptionRow, subscriptions))
    )
    return SubscriptionRow(*updated.one())
