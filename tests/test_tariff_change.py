"""Tariff changes, dated prices, archived tariffs and pauses, billed by the monthly run
(issue 16, points 3 and 4), on SQLite and PostgreSQL with a manual clock.

Amounts are worked by hand: price x days / days in the month, half-up to the cent once per
line. March 2026 has 31 days, April 30; the billing zone is Moscow (UTC+3).
"""

import secrets
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import insert, select

from domains.billing.autopay import AutopayMode
from domains.billing.invoice_run import run_invoices
from domains.billing.models import InvoiceLine
from domains.billing.proration import Period
from domains.billing.reconcile import reconcile
from domains.clock import ManualClock
from domains.customers.lifecycle import run_lifecycle
from domains.customers.models import Contract, Segment, Subscription, SubscriptionStatus
from domains.customers.pause import pause_subscription, resume_subscription
from domains.customers.subscription import SubscriptionRow, subscriptions_by_ids
from domains.customers.tariff import TARIFFS_BY_ID
from domains.customers.tariff_admin import archive_tariff, change_tariff_price, create_tariff
from domains.customers.tariff_change import (
    ChangeWhen,
    available_tariffs,
    cancel_tariff_change,
    change_tariff,
)
from domains.customers.terms import LifecycleTerms
from domains.database import Database
from domains.errors import DomainError
from domains.identity.models import Role
from domains.identity.viewer import Viewer
from domains.outbox import OutboxEvent
from domains.reads import Reader
from tests.test_invoice_run import MOSCOW
from tests.test_payments import insert_customer, make_admin, snapshot

MARCH, APRIL = Period(date(2026, 3, 1)), Period(date(2026, 4, 1))
TERMS = LifecycleTerms(MOSCOW, pause_min_days=7, pause_max_days=90)
LONG_AGO = datetime(2025, 6, 1, tzinfo=UTC)
WRITTEN = (
    "subscriptions",
    "subscription_tariffs",
    "subscription_pauses",
    "tariffs",
    "tariff_prices",
    "outbox",
)


def moscow(day: date, hour: int = 10) -> datetime:
    """`hour` o'clock in Moscow on `day`, as UTC."""
    return datetime(day.year, day.month, day.day, hour, tzinfo=MOSCOW).astimezone(UTC)


async def tariff(db: Database, price: str, segment: Segment = Segment.HOME) -> int:
    admin = await make_admin(db)
    made = await create_tariff(
        db,
        admin,
        code=f"T-{secrets.token_hex(4)}",
        name=f"Home {price}",
        description="",
        segment=segment,
        monthly_price=Decimal(price),
        currency="RUB",
        download_mbps=100,
        upload_mbps=100,
    )
    return made.id


async def subscriber(db: Database, tariff_id: int) -> tuple[Viewer, int]:
    """A customer with one subscription on `tariff_id` since long ago: (viewer, its id)."""
    async with db.transaction() as session:
        user_id, customer_id = await insert_customer(session, "life", LONG_AGO)
        contract_id = (
            await session.execute(
                insert(Contract)
                .values(
                    customer_id=customer_id,
                    tariff_id=tariff_id,
                    address="Lenina st. 1",
                    start_date=LONG_AGO.date(),
                )
                .returning(Contract.id)
            )
        ).scalar_one()
        subscription_id = (
            await session.execute(
                insert(Subscription)
                .values(
                    customer_id=customer_id,
                    contract_id=contract_id,
                    tariff_id=tariff_id,
                    status=SubscriptionStatus.ACTIVE,
                    started_at=LONG_AGO,
                )
                .returning(Subscription.id)
            )
        ).scalar_one()
    return Viewer(user_id, Role.CUSTOMER, customer_id), subscription_id


async def bill(db: Database, period: Period, clock: ManualClock) -> None:
    await run_invoices(db, period, zone=MOSCOW, due_days=10, autopay=AutopayMode.OFF, clock=clock)
    assert [str(problem) for problem in await reconcile(db)] == []


async def lines_of(db: Database, subscription_id: int, period: Period) -> list[tuple]:
    """(tariff, first day, last day, days, unit price, amount) of each line, in day order."""
    async with db.connect() as conn:
        rows = await conn.execute(
            select(
                InvoiceLine.tariff_id,
                InvoiceLine.first_day,
                InvoiceLine.last_day,
                InvoiceLine.days,
                InvoiceLine.unit_price,
                InvoiceLine.amount,
            )
            .where(
                InvoiceLine.subscription_id == subscription_id,
                InvoiceLine.period_start == period.start,
            )
            .order_by(InvoiceLine.first_day)
        )
        return [tuple(row) for row in rows]


async def events(db: Database, type: str) -> list[dict]:
    async with db.connect() as conn:
        rows = await conn.execute(
            select(OutboxEvent.payload).where(OutboxEvent.type == type).order_by(OutboxEvent.id)
        )
        return [row.payload for row in rows]


async def status_of(db: Database, subscription_id: int) -> tuple[SubscriptionStatus, int]:
    async with db.connect() as conn:
        row = (
            await conn.execute(
                select(Subscription.status, Subscription.tariff_id).where(
                    Subscription.id == subscription_id
                )
            )
        ).one()
        return row.status, row.tariff_id


async def refused(db: Database, code: str, action) -> None:
    """`action` fails with `code` and writes nothing."""
    before = await snapshot(db, WRITTEN)
    with pytest.raises(DomainError) as failure:
        await action
    assert failure.value.code == code, failure.value.message
    assert await snapshot(db, WRITTEN) == before


def D(value: str) -> Decimal:
    return Decimal(value)


async def test_an_upgrade_mid_month_bills_both_tariffs_by_day(db: Database) -> None:
    basic, fast = await tariff(db, "500.00"), await tariff(db, "800.00")
    customer, subscription = await subscriber(db, basic)
    clock = ManualClock(moscow(date(2026, 3, 15)))

    change = await change_tariff(
        db, customer, subscription, fast, ChangeWhen.NOW, terms=TERMS, clock=clock
    )

    assert (change.effective_from, change.scheduled) == (date(2026, 3, 15), False)
    assert await status_of(db, subscription) == (SubscriptionStatus.ACTIVE, fast)
    [event] = await events(db, "tariff.changed")
    assert (event["from_tariff_id"], event["to_tariff_id"]) == (basic, fast)
    assert (event["effective_from"], event["scheduled"]) == ("2026-03-15", False)
    await bill(db, MARCH, clock)
    # 500.00 x 14/31 = 225.806 -> 225.81; 800.00 x 17/31 = 438.709 -> 438.71.
    assert await lines_of(db, subscription, MARCH) == [
        (basic, date(2026, 3, 1), date(2026, 3, 14), 14, D("500.00"), D("225.81")),
        (fast, date(2026, 3, 15), date(2026, 3, 31), 17, D("800.00"), D("438.71")),
    ]
    await bill(db, MARCH, clock)  # a second run bills nothing again
    assert len(await lines_of(db, subscription, MARCH)) == 2
    await bill(db, APRIL, clock)
    assert await lines_of(db, subscription, APRIL) == [
        (fast, date(2026, 4, 1), date(2026, 4, 30), 30, D("800.00"), D("800.00"))
    ]


async def test_a_downgrade_waits_for_the_period_end_and_may_be_cancelled(db: Database) -> None:
    basic, cheap = await tariff(db, "500.00"), await tariff(db, "300.00")
    customer, subscription = await subscriber(db, basic)
    _, kept = await subscriber(db, basic)
    kept_customer = Viewer(0, Role.CUSTOMER, None)
    clock = ManualClock(moscow(date(2026, 3, 20)))

    await refused(
        db,
        "TARIFF_DOWNGRADE_AT_PERIOD_END",
        change_tariff(db, customer, subscription, cheap, ChangeWhen.NOW, terms=TERMS, clock=clock),
    )
    change = await change_tariff(
        db, customer, subscription, cheap, ChangeWhen.PERIOD_END, terms=TERMS, clock=clock
    )
    assert (change.effective_from, change.scheduled) == (date(2026, 4, 1), True)
    assert await status_of(db, subscription) == (SubscriptionStatus.ACTIVE, basic)
    await refused(
        db,
        "TARIFF_CHANGE_SCHEDULED",
        change_tariff(
            db, customer, subscription, cheap, ChangeWhen.PERIOD_END, terms=TERMS, clock=clock
        ),
    )
    # Another customer's subscription reads as missing.
    await refused(
        db,
        "NOT_FOUND",
        cancel_tariff_change(db, kept_customer, subscription, terms=TERMS, clock=clock),
    )
    admin = await make_admin(db)
    await change_tariff(db, admin, kept, cheap, ChangeWhen.PERIOD_END, terms=TERMS, clock=clock)
    await cancel_tariff_change(db, admin, kept, terms=TERMS, clock=clock)
    await refused(
        db,
        "NO_TARIFF_CHANGE_SCHEDULED",
        cancel_tariff_change(db, admin, kept, terms=TERMS, clock=clock),
    )
    await bill(db, MARCH, clock)
    assert await lines_of(db, subscription, MARCH) == [
        (basic, date(2026, 3, 1), date(2026, 3, 31), 31, D("500.00"), D("500.00"))
    ]

    clock.advance(moscow(date(2026, 4, 1), 1) - clock.now())
    done = await run_lifecycle(db, terms=TERMS, clock=clock)
    assert done.tariff_changes == 1
    assert await status_of(db, subscription) == (SubscriptionStatus.ACTIVE, cheap)
    assert (await run_lifecycle(db, terms=TERMS, clock=clock)).tariff_changes == 0
    assert [e["scheduled"] for e in await events(db, "tariff.changed")] == [True, True, False]
    await bill(db, APRIL, clock)
    assert await lines_of(db, subscription, APRIL) == [
        (cheap, date(2026, 4, 1), date(2026, 4, 30), 30, D("300.00"), D("300.00"))
    ]
    assert await lines_of(db, kept, APRIL) == [
        (basic, date(2026, 4, 1), date(2026, 4, 30), 30, D("500.00"), D("500.00"))
    ]


async def test_who_may_change_a_tariff(db: Database) -> None:
    basic, fast = await tariff(db, "500.00"), await tariff(db, "800.00")
    business = await tariff(db, "900.00", Segment.BUSINESS)
    customer, subscription = await subscriber(db, basic)
    clock = ManualClock(moscow(date(2026, 3, 15)))
    operator = Viewer(customer.user_id, Role.OPERATOR)
    now = ChangeWhen.NOW
    await refused(
        db,
        "FORBIDDEN",
        change_tariff(db, operator, subscription, fast, now, terms=TERMS, clock=clock),
    )
    await refused(
        db,
        "TARIFF_NOT_AVAILABLE",
        change_tariff(db, customer, subscription, business, now, terms=TERMS, clock=clock),
    )
    await refused(
        db,
        "TARIFF_NOT_AVAILABLE",
        change_tariff(db, customer, subscription, basic, now, terms=TERMS, clock=clock),
    )


async def test_a_price_change_from_a_day_bills_each_day_at_its_price(db: Database) -> None:
    basic = await tariff(db, "500.00")
    _, subscription = await subscriber(db, basic)
    admin = await make_admin(db)
    clock = ManualClock(moscow(date(2026, 3, 1)))

    await refused(
        db,
        "BAD_USER_INPUT",
        change_tariff_price(
            db, admin, basic, D("620.00"), date(2026, 2, 28), terms=TERMS, clock=clock
        ),
    )
    customer = Viewer(0, Role.CUSTOMER, 1)
    await refused(
        db,
        "FORBIDDEN",
        change_tariff_price(
            db, customer, basic, D("620.00"), date(2026, 3, 11), terms=TERMS, clock=clock
        ),
    )
    repriced = await change_tariff_price(
        db, admin, basic, D("620.00"), date(2026, 3, 11), terms=TERMS, clock=clock
    )
    assert repriced.monthly_price == D("500.00"), "the catalogue shows today's price"
    [event] = await events(db, "tariff.price_changed")
    assert (event["monthly_price"], event["effective_from"]) == ("620.00", "2026-03-11")

    await bill(db, MARCH, clock)
    # 500.00 x 10/31 = 161.290 -> 161.29; 620.00 x 21/31 = 420.00.
    assert await lines_of(db, subscription, MARCH) == [
        (basic, date(2026, 3, 1), date(2026, 3, 10), 10, D("500.00"), D("161.29")),
        (basic, date(2026, 3, 11), date(2026, 3, 31), 21, D("620.00"), D("420.00")),
    ]
    clock.advance(timedelta(days=10))
    assert (await run_lifecycle(db, terms=TERMS, clock=clock)).prices == 1
    async with db.read() as reader:
        [row] = await reader.fetch(TARIFFS_BY_ID, ids=[basic])
    assert row.monthly_price == D("620.00")


async def test_an_archived_tariff_is_not_offered_and_is_still_billed(db: Database) -> None:
    old, basic, fast = (
        await tariff(db, "400.00"),
        await tariff(db, "500.00"),
        await tariff(db, "800.00"),
    )
    _, on_old = await subscriber(db, old)
    _, on_basic = await subscriber(db, basic)
    admin = await make_admin(db)
    clock = ManualClock(moscow(date(2026, 3, 1)))

    archived = await archive_tariff(db, admin, old)
    assert not archived.is_active
    await refused(db, "TARIFF_ARCHIVED", archive_tariff(db, admin, old))
    async with db.read() as reader:
        catalogue = [
            row
            for row in await reader.fetch(TARIFFS_BY_ID, ids=[old, basic, fast])
            if row.is_active
        ]
        subscription = await _subscription(reader, on_basic)
        offered = await available_tariffs(reader, subscription, catalogue)
    assert [t.id for t in offered] == [fast]
    await refused(
        db,
        "TARIFF_NOT_AVAILABLE",
        change_tariff(db, admin, on_basic, old, ChangeWhen.PERIOD_END, terms=TERMS, clock=clock),
    )
    await bill(db, MARCH, clock)
    assert await lines_of(db, on_old, MARCH) == [
        (old, date(2026, 3, 1), date(2026, 3, 31), 31, D("400.00"), D("400.00"))
    ]


async def _subscription(reader: Reader, subscription_id: int) -> SubscriptionRow:
    return (await subscriptions_by_ids(reader, [subscription_id]))[subscription_id]


async def test_a_pause_is_not_billed_and_ends_on_its_day(db: Database) -> None:
    basic = await tariff(db, "500.00")
    customer, subscription = await subscriber(db, basic)
    clock = ManualClock(moscow(date(2026, 3, 5)))

    outcome = await pause_subscription(
        db, customer, subscription, date(2026, 3, 10), date(2026, 3, 20), terms=TERMS, clock=clock
    )
    assert outcome.subscription.status is SubscriptionStatus.ACTIVE, "it begins on the 10th"
    clock.advance(moscow(date(2026, 3, 10), 0) - clock.now() + timedelta(minutes=1))
    assert (await run_lifecycle(db, terms=TERMS, clock=clock)).paused == 1
    assert (await status_of(db, subscription))[0] is SubscriptionStatus.PAUSED
    [paused] = await events(db, "subscription.paused")
    assert (paused["first_day"], paused["until"]) == ("2026-03-10", "2026-03-20")
    clock.advance(timedelta(days=10))
    assert (await run_lifecycle(db, terms=TERMS, clock=clock)).resumed == 1
    assert (await status_of(db, subscription))[0] is SubscriptionStatus.ACTIVE
    [resumed] = await events(db, "subscription.resumed")
    assert (resumed["reason"], resumed["resumed_on"]) == ("pause", "2026-03-20")

    await bill(db, MARCH, clock)
    # Paused the 10th to the 19th: 21 days billed, 500.00 x 21/31 = 338.709 -> 338.71.
    assert await lines_of(db, subscription, MARCH) == [
        (basic, date(2026, 3, 1), date(2026, 3, 31), 21, D("500.00"), D("338.71"))
    ]


async def test_a_pause_resumed_early_bills_from_that_day(db: Database) -> None:
    basic = await tariff(db, "500.00")
    customer, subscription = await subscriber(db, basic)
    operator = Viewer(customer.user_id, Role.OPERATOR)
    clock = ManualClock(moscow(date(2026, 3, 10)))

    # An operator pauses on the customer's behalf, from today: paused at once.
    outcome = await pause_subscription(
        db, operator, subscription, date(2026, 3, 10), date(2026, 3, 30), terms=TERMS, clock=clock
    )
    assert outcome.subscription.status is SubscriptionStatus.PAUSED
    clock.advance(timedelta(days=5))
    resumed = await resume_subscription(db, customer, subscription, terms=TERMS, clock=clock)
    assert resumed.subscription.status is SubscriptionStatus.ACTIVE
    assert resumed.pause.resumed_on == date(2026, 3, 15)
    await refused(
        db, "NOT_PAUSED", resume_subscription(db, customer, subscription, terms=TERMS, clock=clock)
    )
    await bill(db, MARCH, clock)
    # Paused the 10th to the 14th: 26 days billed, 500.00 x 26/31 = 419.354 -> 419.35.
    assert await lines_of(db, subscription, MARCH) == [
        (basic, date(2026, 3, 1), date(2026, 3, 31), 26, D("500.00"), D("419.35"))
    ]


async def test_pause_limits_and_bad_input_are_refused(db: Database) -> None:
    basic = await tariff(db, "500.00")
    customer, subscription = await subscriber(db, basic)
    stranger = Viewer(customer.user_id, Role.CUSTOMER, customer.customer_id + 10_000)
    clock = ManualClock(moscow(date(2026, 3, 5)))

    def pause(first: date, until: date, viewer: Viewer = customer):
        return pause_subscription(db, viewer, subscription, first, until, terms=TERMS, clock=clock)

    await refused(db, "PAUSE_TOO_SHORT", pause(date(2026, 3, 10), date(2026, 3, 16)))
    await refused(db, "PAUSE_LIMIT", pause(date(2026, 3, 10), date(2026, 6, 9)))  # 91 days
    await refused(db, "BAD_USER_INPUT", pause(date(2026, 3, 4), date(2026, 3, 20)))
    await refused(db, "BAD_USER_INPUT", pause(date(2026, 3, 20), date(2026, 3, 20)))
    await refused(db, "NOT_FOUND", pause(date(2026, 3, 10), date(2026, 3, 20), stranger))
    await pause(date(2026, 4, 1), date(2026, 5, 31))  # 60 days
    await refused(db, "PAUSE_OVERLAPS", pause(date(2026, 5, 30), date(2026, 6, 10)))
    await refused(db, "PAUSE_LIMIT", pause(date(2026, 7, 1), date(2026, 8, 1)))  # 60 + 31
    # Across the new year each year counts its own days: 30 in 2026 (60 + 30), 10 in 2027.
    await pause(date(2026, 12, 2), date(2027, 1, 11))
    assert len(await events(db, "subscription.paused")) == 0, "none has begun"
