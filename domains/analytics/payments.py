"""Payments per day and method, and revenue: the analytics consumer and the staff's read.

Counted are payments that paid an invoice (`payment.created` with status `succeeded` and
an invoice): that is when money becomes revenue, whatever the method. A top-up of the
balance is a prepayment, not revenue; counting it too would count its money twice, once
when it arrives and again when the balance pays an invoice. Refunds count under the method
of the payment they give back, on the day of the refund. Days are UTC days of the event's
time (when the payment committed), not of its processing, so a late event lands on its
own day.
"""

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from domains.analytics.days import check_range, utc_day
from domains.analytics.models import PaymentsDaily
from domains.billing.models import Payment, PaymentStatus
from domains.database import Database
from domains.events.cloudevent import CloudEvent
from domains.events.consumer import Handler
from domains.reads import Read
from domains.writes import Write, writer

daily = PaymentsDaily.__table__
payments = Payment.__table__

_COUNTERS = ("payments", "amount", "refunds", "refunded")
_day_row = postgresql.insert(daily).values(
    {name: bindparam(name) for name in ("day", "method", "currency", *_COUNTERS)}
)
# Adds to one day's counters in one statement, creating the row on its first event.
_ADD = Write(
    _day_row.on_conflict_do_update(
        index_elements=[daily.c.day, daily.c.method, daily.c.currency],
        set_={name: daily.c[name] + _day_row.excluded[name] for name in _COUNTERS},
    )
)


async def on_payment_created(session: AsyncSession, event: CloudEvent) -> None:
    data = event.data
    if data["status"] != PaymentStatus.SUCCEEDED or data["invoice_id"] is None:
        return
    await _add(
        session,
        utc_day(event.time),
        data["method"],
        data["currency"],
        payments=1,
        amount=Decimal(data["amount"]),
    )


async def on_payment_refunded(session: AsyncSession, event: CloudEvent) -> None:
    data = event.data
    # The event names the payment, not its method; a payment's method never changes.
    method = await session.scalar(
        select(payments.c.method).where(payments.c.id == data["payment_id"])
    )
    if method is None:
        raise LookupError(f"payment {data['payment_id']} of refund {data['refund_id']} not found")
    await _add(
        session,
        utc_day(event.time),
        method.value,
        data["currency"],
        refunds=1,
        refunded=Decimal(data["amount"]),
    )


HANDLERS: dict[str, Handler] = {
    "payment.created": on_payment_created,
    "payment.refunded": on_payment_refunded,
}


async def _add(
    session: AsyncSession,
    day: date,
    method: str,
    currency: str,
    *,
    payments: int = 0,
    amount: Decimal = Decimal(0),
    refunds: int = 0,
    refunded: Decimal = Decimal(0),
) -> None:
    """Adds to one day's counters (`_ADD`)."""
    await writer(session).execute(
        _ADD,
        day=day,
        method=method,
        currency=currency,
        payments=payments,
        amount=amount,
        refunds=refunds,
        refunded=refunded,
    )


@dataclass(frozen=True, slots=True)
class PaymentTotalsRow:
    """One currency's sums over the range: amounts in different currencies do not add."""

    currency: str
    payments: int
    amount: Decimal
    refunds: int
    refunded: Decimal

    @property
    def revenue(self) -> Decimal:
        return self.amount - self.refunded


@dataclass(frozen=True, slots=True)
class PaymentDayRow(PaymentTotalsRow):
    """One day's sums for one method."""

    day: date
    method: str


@dataclass(frozen=True, slots=True)
class PaymentStatistics:
    start: date
    end: date
    days: list[PaymentDayRow]
    totals: list[PaymentTotalsRow]


_in_range = (daily.c.day >= bindparam("start")) & (daily.c.day <= bindparam("end"))
PAYMENT_DAYS = Read(
    PaymentDayRow,
    select(
        daily.c.currency,
        daily.c.payments,
        daily.c.amount,
        daily.c.refunds,
        daily.c.refunded,
        daily.c.day,
        daily.c.method,
    )
    .where(_in_range)
    .order_by(daily.c.day, daily.c.method, daily.c.currency),
)
PAYMENT_TOTALS = Read(
    PaymentTotalsRow,
    select(
        daily.c.currency,
        func.sum(daily.c.payments).label("payments"),
        func.sum(daily.c.amount).label("amount"),
        func.sum(daily.c.refunds).label("refunds"),
        func.sum(daily.c.refunded).label("refunded"),
    )
    .where(_in_range)
    .group_by(daily.c.currency)
    .order_by(daily.c.currency),
)


async def payment_statistics(db: Database, start: date, end: date) -> PaymentStatistics:
    """The days from `start` to `end` inclusive that had payments or refunds, and totals."""
    check_range(start, end)
    async with db.read() as reader:
        days = await reader.fetch(PAYMENT_DAYS, start=start, end=end)
        totals = await reader.fetch(PAYMENT_TOTALS, start=start, end=end)
    return PaymentStatistics(start=start, end=end, days=days, totals=totals)
