"""Which tariff, at which price, a subscription had on which of a period's days.

The monthly run bills a line per piece of a period: a run of days at one tariff and one
monthly price, each prorated on its own (domains/billing/proration.py). The tariff comes
from the subscription's dated tariffs (`subscription_tariffs`: a change from a day on), the
price from the tariff's dated prices (`tariff_prices`), the days billed are the
subscription's active days less its pauses (`subscription_pauses`: from `first_day` up to
the day before it resumed or ends). A subscription with no dated tariff has had its
`tariff_id` all along, a tariff with no dated price its `monthly_price`. Each batch reads
its customers' dated tariffs and pauses, and the catalogue's dated prices, in three
statements whatever its size.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import bindparam, select

from domains.billing.proration import Charge, Period, Span, prorate
from domains.customers.models import SubscriptionPause, SubscriptionTariff, Tariff, TariffPrice
from domains.reads import Read, Reader

spans = SubscriptionTariff.__table__
prices = TariffPrice.__table__
pauses = SubscriptionPause.__table__
tariffs = Tariff.__table__

_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class _TariffFrom:
    subscription_id: int
    tariff_id: int
    first_day: date
    tariff_name: str
    monthly_price: Decimal


@dataclass(frozen=True, slots=True)
class _PriceFrom:
    tariff_id: int
    effective_from: date
    monthly_price: Decimal


@dataclass(frozen=True, slots=True)
class _Paused:
    subscription_id: int
    first_day: date
    until: date
    resumed_on: date | None


_TARIFFS = Read(
    _TariffFrom,
    select(
        spans.c.subscription_id,
        spans.c.tariff_id,
        spans.c.first_day,
        tariffs.c.name.label("tariff_name"),
        tariffs.c.monthly_price,
    )
    .join(tariffs, tariffs.c.id == spans.c.tariff_id)
    .where(
        spans.c.customer_id > bindparam("after"),
        spans.c.customer_id <= bindparam("last"),
        spans.c.first_day <= bindparam("through"),
    )
    .order_by(spans.c.subscription_id, spans.c.first_day),
)
_PRICES = Read(
    _PriceFrom,
    select(prices.c.tariff_id, prices.c.effective_from, prices.c.monthly_price)
    .where(prices.c.effective_from <= bindparam("through"))
    .order_by(prices.c.tariff_id, prices.c.effective_from),
)
_PAUSES = Read(
    _Paused,
    select(pauses.c.subscription_id, pauses.c.first_day, pauses.c.until, pauses.c.resumed_on)
    .where(
        pauses.c.customer_id > bindparam("after"),
        pauses.c.customer_id <= bindparam("last"),
        pauses.c.first_day <= bindparam("through"),
        pauses.c.until > bindparam("since_day"),
    )
    .order_by(pauses.c.subscription_id, pauses.c.first_day),
)


@dataclass(frozen=True, slots=True)
class Piece:
    """One line to be: `charge` for days at `tariff_id`, described with its name."""

    tariff_id: int
    charge: Charge
    description: str


@dataclass(frozen=True, slots=True)
class History:
    """A batch's dated tariffs and pauses (by subscription) and dated prices (by tariff)."""

    tariffs: dict[int, list[_TariffFrom]]
    prices: dict[int, list[_PriceFrom]]
    pauses: dict[int, list[_Paused]]

    def pieces(
        self,
        period: Period,
        subscription_id: int,
        tariff: tuple[int, str, Decimal],
        active: Sequence[Span],
    ) -> list[Piece]:
        """The charges of `period` for the `active` days of a subscription whose tariff
        (id, name, monthly price) is `tariff` when it has no dated ones: one per run of days
        at one tariff and price, in day order, less its paused days."""
        days = _less(_cut(active, period), self._paused(subscription_id))
        billed = []
        for tariff_id, name, price, first, last in self._runs(period, subscription_id, tariff):
            within = [
                Span(max(a, first), min(b, last)) for a, b in days if a <= last and b >= first
            ]
            charge = prorate(price, period, within)
            if charge is not None:
                billed.append(Piece(tariff_id, charge, charge.describe(name)))
        return billed

    def _paused(self, subscription_id: int) -> list[tuple[date, date]]:
        return [
            (pause.first_day, (pause.resumed_on or pause.until) - _DAY)
            for pause in self.pauses.get(subscription_id, ())
        ]

    def _runs(
        self, period: Period, subscription_id: int, tariff: tuple[int, str, Decimal]
    ) -> list[tuple[int, str, Decimal, date, date]]:
        """(tariff id, name, price, first, last day) for each run of the period's days at one
        tariff and price; neighbours at the same tariff and price merge."""
        dated = self.tariffs.get(subscription_id) or [
            _TariffFrom(subscription_id, tariff[0], period.start, tariff[1], tariff[2])
        ]
        runs: list[tuple[int, str, Decimal, date, date]] = []
        for n, span in enumerate(dated):
            first = max(span.first_day, period.start)
            last = period.end if n + 1 == len(dated) else dated[n + 1].first_day - _DAY
            last = min(last, period.end)
            if first > last:
                continue
            for price, price_first, price_last in self._priced(span, first, last):
                if runs and runs[-1][0] == span.tariff_id and runs[-1][2] == price:
                    runs[-1] = (*runs[-1][:4], price_last)
                else:
                    runs.append((span.tariff_id, span.tariff_name, price, price_first, price_last))
        return runs

    def _priced(
        self, span: _TariffFrom, first: date, last: date
    ) -> list[tuple[Decimal, date, date]]:
        """The days `first`..`last` of a tariff cut where its price changes."""
        dated = self.prices.get(span.tariff_id, ())
        cuts = [(p.effective_from, p.monthly_price) for p in dated if first < p.effective_from]
        price = span.monthly_price
        for change in dated:
            if change.effective_from <= first:
                price = change.monthly_price
        priced = []
        for effective_from, next_price in cuts:
            if effective_from > last:
                break
            priced.append((price, first, effective_from - _DAY))
            first, price = effective_from, next_price
        priced.append((price, first, last))
        return priced


async def history(reader: Reader, period: Period, *, after: int, last: int) -> History:
    """The dated tariffs, prices and pauses that bear on the customers (`after`, `last`]'s
    bills for `period`."""
    through = period.end
    dated = await reader.fetch(_TARIFFS, after=after, last=last, through=through)
    priced = await reader.fetch(_PRICES, through=through)
    paused = await reader.fetch(
        _PAUSES, after=after, last=last, through=through, since_day=period.start
    )
    history = History({}, {}, {})
    for row in dated:
        history.tariffs.setdefault(row.subscription_id, []).append(row)
    for price in priced:
        history.prices.setdefault(price.tariff_id, []).append(price)
    for pause in paused:
        history.pauses.setdefault(pause.subscription_id, []).append(pause)
    return history


def _cut(active: Sequence[Span], period: Period) -> list[tuple[date, date]]:
    cut = []
    for span in active:
        first = max(span.first, period.start)
        last = period.end if span.last is None else min(span.last, period.end)
        if first <= last:
            cut.append((first, last))
    return sorted(cut)


Days = list[tuple[date, date]]


def _less(days: Days, paused: Days) -> Days:
    """The runs of `days` outside every paused run (both inclusive)."""
    for stop_first, stop_last in paused:
        if stop_last < stop_first:
            continue
        left = []
        for first, last in days:
            if stop_last < first or stop_first > last:
                left.append((first, last))
                continue
            if first < stop_first:
                left.append((first, stop_first - _DAY))
            if last > stop_last:
                left.append((stop_last + _DAY, last))
        days = left
    return days
