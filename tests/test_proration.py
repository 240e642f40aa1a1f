"""Proration by day (domains/billing/proration.py): every expected amount is worked by hand
in the case's comment, from price x days / days in the month, half-up to the cent."""

from datetime import date
from decimal import Decimal

import pytest

from domains.billing.proration import Period, Span, prorate

MARCH = Period(date(2026, 3, 1))  # 31 days


def _spans(*texts: str) -> list[Span]:
    """ "2026-03-15..2026-03-20" (both days included), "2026-03-15.." (still active)."""
    spans = []
    for text in texts:
        first, last = text.split("..")
        spans.append(Span(date.fromisoformat(first), date.fromisoformat(last) if last else None))
    return spans


# Each amount by hand: price x days billed / days in the month, half-up to the cent.
# fmt: off
CASES = [
    # id, monthly price, month, active spans, days billed (first..last), amount
    # 100.00 x 14 / 31 = 45.1612... (Lago's example)
    ("lago-14-of-31-days", "100.00", "2026-01", ["2026-01-18.."],
     14, "2026-01-18..2026-01-31", "45.16"),
    # starts 15 March: 15..31 is 17 days; 590.00 x 17 / 31 = 323.5483...
    ("start-mid-month", "590.00", "2026-03", ["2026-03-15.."],
     17, "2026-03-15..2026-03-31", "323.55"),
    # ends 10 April: 10 of 30 days; 790.00 x 10 / 30 = 263.333...
    ("end-mid-month", "790.00", "2026-04", ["2025-06-03..2026-04-10"],
     10, "2026-04-01..2026-04-10", "263.33"),
    # pauses after 10 May, resumes 21 May: 10 + 11 = 21 of 31 days; 990.00 x 21 / 31 = 670.645...
    ("pause-and-resume", "990.00", "2026-05", ["2025-01-01..2026-05-10", "2026-05-21.."],
     21, "2026-05-01..2026-05-31", "670.65"),
    # paused and resumed on 10 May: that day is billed once, so the month is whole
    ("pause-and-resume-same-day", "990.00", "2026-05", ["2025-01-01..2026-05-10", "2026-05-10.."],
     31, "2026-05-01..2026-05-31", "990.00"),
    # the tariff costs 590.00 in June: the whole of June is 590.00 ...
    ("price-change-before", "590.00", "2026-06", ["2025-01-01.."],
     30, "2026-06-01..2026-06-30", "590.00"),
    # ... and 650.00 from July; ending 20 July: 650.00 x 20 / 31 = 419.3548...
    ("price-change-after", "650.00", "2026-07", ["2025-01-01..2026-07-20"],
     20, "2026-07-01..2026-07-20", "419.35"),
    # February 2026 has 28 days: 15..28 is 14; 590.00 x 14 / 28 = 295.00 exactly
    ("february", "590.00", "2026-02", ["2026-02-15.."],
     14, "2026-02-15..2026-02-28", "295.00"),
    # February 2028 has 29 days: 15..29 is 15; 590.00 x 15 / 29 = 305.1724...
    ("leap-february", "590.00", "2028-02", ["2028-02-15.."],
     15, "2028-02-15..2028-02-29", "305.17"),
    # a 31-day month's last day alone: 790.00 x 1 / 31 = 25.4838...
    ("31-day-month-last-day", "790.00", "2026-03", ["2026-03-31.."],
     1, "2026-03-31..2026-03-31", "25.48"),
    # active all month, and before and after it: exactly the price
    ("whole-month", "3490.00", "2026-12", ["2024-09-09..2027-01-05"],
     31, "2026-12-01..2026-12-31", "3490.00"),
    # 0.14 x 1 / 28 = 0.005 exactly: half a cent goes up (banker's rounding would give 0.00)
    ("half-a-cent-rounds-up", "0.14", "2026-02", ["2026-02-28.."],
     1, "2026-02-28..2026-02-28", "0.01"),
]
# fmt: on


@pytest.mark.parametrize(
    ("price", "month", "spans", "days", "billed", "amount"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_prorated_amount(
    price: str, month: str, spans: list[str], days: int, billed: str, amount: str
) -> None:
    charge = prorate(Decimal(price), Period(date.fromisoformat(f"{month}-01")), _spans(*spans))

    assert charge is not None
    [billed_span] = _spans(billed)
    assert (charge.days, charge.first_day, charge.last_day) == (
        days,
        billed_span.first,
        billed_span.last,
    )
    assert charge.amount == Decimal(amount)
    assert charge.amount.as_tuple().exponent == -2  # cents, as the money column keeps them
    assert charge.unit_price == Decimal(price)


@pytest.mark.parametrize(
    ("price", "spans"),
    [
        pytest.param("590.00", [], id="no-spans"),
        pytest.param("590.00", [Span(date(2025, 1, 1), date(2026, 2, 28))], id="ended-before"),
        pytest.param("590.00", [Span(date(2026, 4, 1))], id="starts-after"),
        # paused all month: active before it and after it, no day in it
        pytest.param(
            "590.00",
            [Span(date(2026, 1, 1), date(2026, 2, 28)), Span(date(2026, 4, 1))],
            id="paused-all-month",
        ),
        # 0.10 x 1 / 31 = 0.0032...: rounds to nothing, so there is nothing to bill
        pytest.param("0.10", [Span(date(2026, 3, 31))], id="rounds-to-nothing"),
    ],
)
def test_nothing_to_bill_makes_no_charge(price: str, spans: list[Span]) -> None:
    assert prorate(Decimal(price), MARCH, spans) is None


def test_each_line_is_rounded_once() -> None:
    """So the two parts of a split month add up to the price, except when each is exactly
    half a cent: both go up. 100.00 x 14 / 31 = 45.16 and x 17 / 31 = 54.84 (100.00);
    10.01 x 15 / 30 = 5.005 -> 5.01, twice (10.02)."""
    april = Period(date(2026, 4, 1))
    charges = [
        prorate(Decimal(price), period, _spans(span))
        for price, period, span in (
            ("100.00", MARCH, "2026-01-01..2026-03-14"),
            ("100.00", MARCH, "2026-03-15.."),
            ("10.01", april, "2026-01-01..2026-04-15"),
            ("10.01", april, "2026-04-16.."),
        )
    ]

    assert [charge.amount if charge else None for charge in charges] == [
        Decimal("45.16"),
        Decimal("54.84"),
        Decimal("5.01"),
        Decimal("5.01"),
    ]


@pytest.mark.parametrize("price", [590.0, "590.00"])
def test_a_price_must_be_a_decimal(price: object) -> None:
    with pytest.raises(TypeError, match="Decimal"):
        prorate(price, MARCH, [Span(date(2026, 3, 1))])  # type: ignore[arg-type]


@pytest.mark.parametrize("price", ["0.00", "-1.00", "10.005", "NaN"])
def test_a_price_is_a_positive_whole_number_of_cents(price: str) -> None:
    with pytest.raises(ValueError, match="whole number of cents"):
        prorate(Decimal(price), MARCH, [Span(date(2026, 3, 1))])


def test_a_period_is_a_calendar_month() -> None:
    assert Period.of(date(2028, 2, 17)) == Period(date(2028, 2, 1))
    assert (Period(date(2028, 2, 1)).days, Period(date(2028, 2, 1)).end) == (29, date(2028, 2, 29))
    with pytest.raises(ValueError, match="starts on the 1st"):
        Period(date(2026, 3, 2))
    with pytest.raises(ValueError, match="before it starts"):
        Span(date(2026, 3, 2), date(2026, 3, 1))


def test_a_charge_describes_itself() -> None:
    charge = prorate(Decimal("590.00"), MARCH, [Span(date(2026, 3, 15))])

    assert charge is not None
    assert charge.describe("Home 100") == "Home 100: 2026-03-15 to 2026-03-31, 17 of 31 days"
