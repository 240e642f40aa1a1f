"""What the monthly run would bill: a batch of customers at a time, each with its charges.

The run and its dry run read the same batches. A subscription is billable for a period when
it was active on one of its days (its start, and its end when it has one, are read as dates
in the billing time zone) and no line bills it for the period yet; a customer is billable
when it has such a subscription and no monthly invoice for the period. A customer already
billed, or each of whose subscriptions is, is not read again, so a second run reads nothing.

A `cancelled` subscription is billed up to its `ended_at` (none without one).

Tariff changes, dated prices and pauses (domains/billing/tariff_days.py): a subscription is
billed a line per run of its days at one tariff and price, its paused days left out, so a
line is unique per (subscription, period, first day billed); a subscription with any line
for the period is billed, and not read again. Each batch reads them in three more
statements.

Suspensions for debt are dated (`subscription_suspensions`, domains/billing/suspension.py):
a subscription, suspended or not when the run reads it, is billed for its days outside
them, prorated by day as the rest (the day it is suspended and the day it resumes both
count as active, as a start and an end do). Each batch reads its customers' suspensions
that touch the period in one more statement.

A subscription whose tariff is in another currency than its customer's account is not
billed: an invoice is in one currency, its account's.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, bindparam, exists, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from domains.billing.models import Invoice, InvoiceLine, SubscriptionSuspension
from domains.billing.proration import Charge, Period, Span
from domains.billing.tariff_days import History, history
from domains.customers.models import Customer, Subscription, SubscriptionStatus, Tariff
from domains.reads import Read, Reader

subscriptions = Subscription.__table__
tariffs = Tariff.__table__
customers = Customer.__table__
invoices = Invoice.__table__
lines = InvoiceLine.__table__
suspensions = SubscriptionSuspension.__table__


@dataclass(frozen=True, slots=True)
class Item:
    """One subscription's charge for the period: a line to be."""

    subscription_id: int
    tariff_id: int
    charge: Charge
    description: str


@dataclass(frozen=True, slots=True)
class Bill:
    """One customer's invoice to be: its lines and their sum."""

    customer_id: int
    currency: str
    items: tuple[Item, ...]
    amount: Decimal  # the sum of the items' amounts


@dataclass(frozen=True, slots=True)
class Batch:
    """A batch of billable customers: `last_customer_id` is where the next one starts;
    `customers` counts those read, some of which may have nothing to bill."""

    customers: int
    last_customer_id: int
    bills: tuple[Bill, ...]


def _billable(*, after: bool = False) -> ColumnElement[bool]:
    """`after`: the statement reads customers after the bind `after`, and so does its look
    for their invoices. The planner may look for them by a merge join over the period's
    invoices (a prepared statement's generic plan did, at 700,000 customers): bounded so, it
    reads those of the customers still ahead, not every invoice billed so far in each batch,
    which made the run quadratic."""
    invoiced = [
        invoices.c.customer_id == subscriptions.c.customer_id,
        invoices.c.period_start == bindparam("period_start"),
        text("invoices.kind = 'monthly'"),
    ]
    if after:
        invoiced.append(invoices.c.customer_id > bindparam("after"))
    return and_(
        or_(
            subscriptions.c.status == SubscriptionStatus.ACTIVE,
            subscriptions.c.status == SubscriptionStatus.SUSPENDED,
            subscriptions.c.status == SubscriptionStatus.PAUSED,
            and_(
                subscriptions.c.status == SubscriptionStatus.CANCELLED,
                subscriptions.c.ended_at.is_not(None),
            ),
        ),
        subscriptions.c.started_at < bindparam("until"),
        or_(subscriptions.c.ended_at.is_(None), subscriptions.c.ended_at >= bindparam("since")),
        ~exists().where(
            lines.c.subscription_id == subscriptions.c.id,
            lines.c.period_start == bindparam("period_start"),
        ),
        ~exists().where(*invoiced),
    )


@dataclass(frozen=True, slots=True)
class _Customer:
    customer_id: int


@dataclass(frozen=True, slots=True)
class _Billable:
    """A billable subscription of a batch's customer, with its tariff and currency."""

    subscription_id: int
    customer_id: int
    tariff_id: int
    started_at: datetime
    ended_at: datetime | None
    tariff_name: str
    monthly_price: Decimal
    currency: str


_CUSTOMERS = Read(
    _Customer,
    select(subscriptions.c.customer_id)
    .where(_billable(after=True), subscriptions.c.customer_id > bindparam("after"))
    .group_by(subscriptions.c.customer_id)
    .order_by(subscriptions.c.customer_id)
    .limit(bindparam("size")),
)
_COUNT = select(func.count(func.distinct(subscriptions.c.customer_id))).where(_billable())
_ITEMS = Read(
    _Billable,
    select(
        subscriptions.c.id.label("subscription_id"),
        subscriptions.c.customer_id,
        subscriptions.c.tariff_id,
        subscriptions.c.started_at,
        subscriptions.c.ended_at,
        tariffs.c.name.label("tariff_name"),
        tariffs.c.monthly_price,
        customers.c.currency,
    )
    .join(tariffs, tariffs.c.id == subscriptions.c.tariff_id)
    .join(customers, customers.c.id == subscriptions.c.customer_id)
    .where(
        _billable(after=True),
        subscriptions.c.customer_id > bindparam("after"),
        subscriptions.c.customer_id <= bindparam("last"),
        tariffs.c.currency == customers.c.currency,
    )
    .order_by(subscriptions.c.customer_id, subscriptions.c.id),
)


@dataclass(frozen=True, slots=True)
class _Suspended:
    subscription_id: int
    suspended_at: datetime
    resumed_at: datetime | None


# The batch's customers' suspensions that overlap the period, by subscription and time.
_SUSPENSIONS = Read(
    _Suspended,
    select(suspensions.c.subscription_id, suspensions.c.suspended_at, suspensions.c.resumed_at)
    .where(
        suspensions.c.customer_id > bindparam("after"),
        suspensions.c.customer_id <= bindparam("last"),
        suspensions.c.suspended_at < bindparam("until"),
        or_(suspensions.c.resumed_at.is_(None), suspensions.c.resumed_at >= bindparam("since")),
    )
    .order_by(suspensions.c.subscription_id, suspensions.c.suspended_at),
)


def _bounds(period: Period, zone: ZoneInfo) -> dict[str, Any]:
    """The period's first and next month's first midnight in the billing zone, as UTC."""
    start = period.start
    following = date(start.year + start.month // 12, start.month % 12 + 1, 1)
    return {
        "period_start": start,
        "since": datetime.combine(start, time(), zone).astimezone(UTC),
        "until": datetime.combine(following, time(), zone).astimezone(UTC),
    }


async def count_billable(
    conn: AsyncConnection | AsyncSession, period: Period, zone: ZoneInfo
) -> int:
    """How many customers the run has still to read: what a progress bar counts to."""
    return (await conn.execute(_COUNT, _bounds(period, zone))).scalar_one()


@dataclass(frozen=True, slots=True)
class Customers:
    """The next batch's customers: the ids in (`after`, `last`], `count` of them."""

    after: int
    last: int
    count: int


async def billable_customers(
    reader: Reader, period: Period, zone: ZoneInfo, *, after: int, size: int
) -> Customers | None:
    """The next `size` billable customers after customer id `after`; None when there are
    none left."""
    ids = await reader.fetch(_CUSTOMERS, **_bounds(period, zone), after=after, size=size)
    if not ids:
        return None
    return Customers(after, ids[-1].customer_id, len(ids))


async def billable_bills(
    reader: Reader, period: Period, zone: ZoneInfo, customers: Customers
) -> tuple[Bill, ...]:
    """What `customers` have still to be billed, read in one statement."""
    bounds = _bounds(period, zone)
    rows = await reader.fetch(_ITEMS, **bounds, after=customers.after, last=customers.last)
    cut = await reader.fetch(
        _SUSPENSIONS,
        since=bounds["since"],
        until=bounds["until"],
        after=customers.after,
        last=customers.last,
    )
    suspended: dict[int, list[_Suspended]] = {}
    for row in cut:
        suspended.setdefault(row.subscription_id, []).append(row)
    dated = await history(reader, period, after=customers.after, last=customers.last)
    return _bills(rows, period, zone, suspended, dated)


async def billable_batch(
    reader: Reader, period: Period, zone: ZoneInfo, *, after: int, size: int
) -> Batch | None:
    """The next `size` billable customers after customer id `after`, with their charges;
    None when there are none left. Two statements, whatever the batch's size."""
    customers = await billable_customers(reader, period, zone, after=after, size=size)
    if customers is None:
        return None
    bills = await billable_bills(reader, period, zone, customers)
    return Batch(customers.count, customers.last, bills)


def _bills(
    rows: Sequence[_Billable],
    period: Period,
    zone: ZoneInfo,
    suspended: dict[int, list[_Suspended]],
    dated: History,
) -> tuple[Bill, ...]:
    bills: list[Bill] = []
    items: list[Item] = []
    for n, row in enumerate(rows):
        first = row.started_at.astimezone(zone).date()
        last = None if row.ended_at is None else row.ended_at.astimezone(zone).date()
        spans = _active_spans(first, last, suspended.get(row.subscription_id, ()), zone)
        tariff = (row.tariff_id, row.tariff_name, row.monthly_price)
        for piece in dated.pieces(period, row.subscription_id, tariff, spans):
            items.append(
                Item(row.subscription_id, piece.tariff_id, piece.charge, piece.description)
            )
        closing = n + 1 == len(rows) or rows[n + 1].customer_id != row.customer_id
        if closing and items:
            amount = sum((item.charge.amount for item in items), Decimal("0.00"))
            bills.append(Bill(row.customer_id, row.currency, tuple(items), amount))
        if closing:
            items = []
    return tuple(bills)


def _active_spans(
    first: date, last: date | None, cut: Sequence[_Suspended], zone: ZoneInfo
) -> list[Span]:
    """The subscription's days less its suspensions' (in time order): active up to the day
    each suspension starts, and again from the day it ends."""
    spans = []
    for suspension in cut:
        until = suspension.suspended_at.astimezone(zone).date()
        if until >= first and (last is None or until <= last):
            spans.append(Span(first, until))
        elif last is not None and until > last:
            spans.append(Span(first, last))
        if suspension.resumed_at is None:
            return spans
        first = max(first, suspension.resumed_at.astimezone(zone).date())
        if last is not None and first > last:
            return spans
    spans.append(Span(first, last))
    return spans
