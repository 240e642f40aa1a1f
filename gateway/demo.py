"""Demo and benchmark data: one generator of plausible subscribers, two loaders.

`load_demo` gives `make dev` a populated portal with known logins; `load_bulk` fills a
database for benchmarks. Every choice comes from `random.Random(seed)`, so a seed always
yields the same people, contracts and invoices (dates count back from the current month).
Rows go in with executemany inserts; ids come back through RETURNING in parameter order,
so children are linked to their parents without a query per row.

Money moves only through the ledger's posting, as in production, so the data reconciles
(`kabinet billing reconcile`) and customers' cached balances come from their entries: a
balance arrives in card top-ups (a payment of no invoice: debit provider clearing, credit
the customer balance), one opening top-up for a bulk customer, large enough for their
balance payments.

The demo's invoices are the monthly run's (`run_invoices`, one a month per customer, a
line per subscription), paid by its autopay from balances topped up before each run, the
rest through the payment actions, so it shows what production makes. What becomes of each
month (paid, paid in part, overdue, still open, refunded in part and paid again) is one
rule, `_fate`. The bulk loader, which must write hundreds of thousands of invoices in
minutes, writes its invoices, their one line and their payments by hand under the same
rule, each billing one subscription for one month (a whole month: the tariff's price),
posted at its issue time (`post_issuance`).
"""

import asyncio
import dataclasses
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Table, bindparam, func, insert, literal, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from domains.billing.autopay import AutopayMode
from domains.billing.invoice import InvoiceRow
from domains.billing.invoice_issue import ISSUED, IssuedInvoice, post_issuance
from domains.billing.invoice_overdue import mark_overdue_invoices
from domains.billing.invoice_run import invoice_number, run_invoices
from domains.billing.ledger import Entry, post_movements
from domains.billing.models import (
    EntrySide,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    LedgerAccount,
    Payment,
    PaymentMethod,
    PaymentStatus,
)
from domains.billing.pay_invoice import pay_invoice
from domains.billing.promised_payment import PromiseTerms, activate_promised_payment
from domains.billing.proration import Period, Span, prorate
from domains.billing.refund_payment import refund_payment
from domains.clock import ManualClock, utcnow
from domains.customers.models import (
    Contract,
    ContractStatus,
    Customer,
    Segment,
    Subscription,
    SubscriptionStatus,
    Tariff,
    TariffPrice,
)
from domains.customers.tariff_admin import BEFORE_ANY_PRICE
from domains.database import Database
from domains.events.models import ProcessedEvent
from domains.identity.models import Role, User
from domains.identity.passwords import hash_password
from domains.identity.viewer import Viewer
from domains.outbox import OutboxEvent
from domains.reads import Read, select_rows
from gateway.demo_support import load_support_demo
from schema.notifications import CONSUMER_NAME as NOTIFICATIONS_CONSUMER

Progress = Callable[[int, int], None]
Row = dict[str, Any]

# Published in README.md: the demo logins are for local development only.
DEMO_PASSWORD = "kabinet-demo"  # noqa: S105 - the documented demo login
DEMO_LOGINS: dict[str, Role] = {
    "admin@example.com": Role.ADMIN,
    "operator@example.com": Role.OPERATOR,
    "operator2@example.com": Role.OPERATOR,
    "alice@example.com": Role.CUSTOMER,
    "bob@example.com": Role.CUSTOMER,
}
DEMO_MONTHS = 12
# The run's schedule the demo's months are billed on unless told otherwise: the settings'
# defaults (KABINET_BILLING_TIMEZONE, KABINET_INVOICE_DUE_DAYS, KABINET_BILLING_RUN_AT).
DEMO_ZONE = ZoneInfo("Europe/Moscow")
DEMO_DUE_DAYS = 10
DEMO_RUN_AT = time(3)
DEMO_SECOND_CONTRACT_SHARE = 0.15
CURRENCY = "RUB"

# Demo batches are small so the progress bar moves; bulk batches are a few thousand rows.
DEMO_BATCH = 10
BULK_BATCH = 250

users = User.__table__
customers_table = Customer.__table__
tariffs = Tariff.__table__
contracts = Contract.__table__
subscriptions = Subscription.__table__
invoices = Invoice.__table__
invoice_lines = InvoiceLine.__table__
_INVOICE_BY_NUMBER = Read(
    InvoiceRow, select_rows(InvoiceRow, invoices).where(invoices.c.number == bindparam("number"))
)
payments = Payment.__table__

TARIFFS: tuple[Row, ...] = (
    {
        "code": "home-100",
        "name": "Home 100",
        "description": "Fibre to the flat, 100 Mbit/s, unlimited traffic, Wi-Fi router rental.",
        "segment": Segment.HOME,
        "monthly_price": Decimal("590.00"),
        "download_mbps": 100,
        "upload_mbps": 100,
        "is_active": True,
    },
    {
        "code": "home-500",
        "name": "Home 500",
        "description": "500 Mbit/s for streaming and gaming, dual-band Wi-Fi 6 router included.",
        "segment": Segment.HOME,
        "monthly_price": Decimal("790.00"),
        "download_mbps": 500,
        "upload_mbps": 500,
        "is_active": True,
    },
    {
        "code": "home-1000",
        "name": "Home Gigabit",
        "description": "1 Gbit/s symmetric, IPTV with 200 channels, priority support line.",
        "segment": Segment.HOME,
        "monthly_price": Decimal("990.00"),
        "download_mbps": 1000,
        "upload_mbps": 1000,
        "is_active": True,
    },
    {
        "code": "business-500",
        "name": "Business 500",
        "description": "500 Mbit/s for offices: static IPv4, 4-hour repair SLA, closing documents.",
        "segment": Segment.BUSINESS,
        "monthly_price": Decimal("3490.00"),
        "download_mbps": 500,
        "upload_mbps": 500,
        "is_active": True,
    },
    {
        "code": "home-50",
        "name": "Home 50 (archived)",
        "description": "ADSL-era plan, closed to new contracts; existing subscribers keep it.",
        "segment": Segment.HOME,
        "monthly_price": Decimal("450.00"),
        "download_mbps": 50,
        "upload_mbps": 20,
        "is_active": False,
    },
)
# The archived plan was repriced long before the demo's months: its history, as
# changeTariffPrice keeps one (domains/customers/tariff_admin.py).
PRICE_HISTORY = {"home-50": ((BEFORE_ANY_PRICE, "390.00"), (date(2020, 1, 1), "450.00"))}
HOME_TARIFF_WEIGHTS = {"home-100": 30, "home-500": 35, "home-1000": 20, "home-50": 15}
BUSINESS_SHARE = 0.15

MALE_NAMES = (
    "Alexander", "Dmitry", "Maxim", "Sergey", "Andrey", "Alexey", "Artyom", "Ilya", "Kirill",
    "Mikhail", "Nikita", "Roman", "Pavel", "Ivan", "Egor", "Vladimir", "Oleg", "Denis", "Timur",
    "Ruslan",
)  # fmt: skip
FEMALE_NAMES = (
    "Anna", "Maria", "Elena", "Olga", "Natalia", "Tatiana", "Irina", "Ekaterina", "Svetlana",
    "Yulia", "Anastasia", "Daria", "Polina", "Ksenia", "Victoria", "Alina", "Sofia", "Galina",
    "Lyudmila", "Aigul",
)  # fmt: skip
# Masculine forms; _surname derives the feminine one.
SURNAMES = (
    "Ivanov", "Smirnov", "Kuznetsov", "Popov", "Vasiliev", "Petrov", "Sokolov", "Mikhailov",
    "Novikov", "Fedorov", "Morozov", "Volkov", "Alekseev", "Lebedev", "Semenov", "Egorov",
    "Pavlov", "Kozlov", "Stepanov", "Nikolaev", "Orlov", "Andreev", "Makarov", "Zakharov",
    "Zaitsev", "Solovyov", "Borisov", "Yakovlev", "Grigoriev", "Romanov", "Belov", "Medvedev",
    "Garipov", "Khabibullin", "Kovalevsky", "Zhukovsky",
)  # fmt: skip
CITIES: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    ("Moscow", 40, ("Tverskaya st.", "Arbat st.", "Leninsky pr.", "Profsoyuznaya st.",
                    "Kutuzovsky pr.", "Mira pr.", "Lyublinskaya st.")),
    ("Saint Petersburg", 25, ("Nevsky pr.", "Liteyny pr.", "Sadovaya st.", "Moskovsky pr.",
                              "Bolshoy pr. V.O.")),
    ("Kazan", 12, ("Baumana st.", "Pushkina st.", "Pobedy pr.", "Chistopolskaya st.")),
    ("Novosibirsk", 8, ("Krasny pr.", "Lenina st.", "Vokzalnaya magistral")),
    ("Yekaterinburg", 8, ("Lenina pr.", "Malysheva st.", "8 Marta st.")),
    ("Nizhny Novgorod", 7, ("Bolshaya Pokrovskaya st.", "Gagarina pr.", "Rodionova st.")),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Namespace:
    """Number and email formats; loads in different namespaces never collide."""

    contract_prefix: str
    invoice_prefix: str
    email_domain: str
    digits: int

    def contract_num(self, n: int) -> str:
        return f"{self.contract_prefix}-{n:0{self.digits}d}"

    def invoice_number(self, period: date, n: int) -> str:
        return f"{self.invoice_prefix}-{period:%Y%m}-{n:0{self.digits}d}"


_DEMO_NAMESPACE = _Namespace("K", "INV", "example.com", 6)


def _bulk_namespace(seed: int) -> _Namespace:
    return _Namespace(f"B{seed}", f"INV-B{seed}", f"bulk{seed}.example.com", 7)


@dataclass(frozen=True, slots=True)
class _TariffRef:
    id: int
    name: str
    monthly_price: Decimal


@dataclass(frozen=True, slots=True)
class _Person:
    """Who a customer is and how they pay; the generator turns it into rows."""

    full_name: str
    email: str
    phone: str
    places: tuple[tuple[str, str], ...]  # (tariff code, address), one per contract
    balance: Decimal
    card_share: float  # chance that a payment is by card rather than from the balance
    arrears: int = 0  # the latest past months left unpaid (overdue)
    partial: bool = False  # the oldest of those months is partly paid
    pays_ahead: bool = False  # the current month is paid too
    # The oldest month was paid, part of it refunded (goodwill), and paid again.
    repaid: bool = False


@dataclass(frozen=True, slots=True)
class _Movement:
    """Money from one account to another; its owners' ids are known only once inserted."""

    debit: LedgerAccount
    credit: LedgerAccount
    amount: Decimal
    at: datetime

    def entries(
        self, customer_id: int, *, invoice_id: int | None = None, payment_id: int | None = None
    ) -> list[Entry]:
        """Both entries name the payment, if any; only the receivable's names the invoice."""
        return [
            Entry(
                account,
                side,
                self.amount,
                CURRENCY,
                customer_id,
                invoice_id=invoice_id if account is LedgerAccount.RECEIVABLE else None,
                payment_id=payment_id,
            )
            for account, side in ((self.debit, EntrySide.DEBIT), (self.credit, EntrySide.CREDIT))
        ]


class _Fate(Enum):
    """What becomes of a customer's invoice of one month: the one rule both loaders follow."""

    PAID = "paid"
    OPEN = "open"  # this month's, not paid yet: issued
    OVERDUE = "overdue"  # in arrears, unpaid
    PART_PAID = "part_paid"  # in arrears, paid in part
    REPAID = "repaid"  # paid, part of it given back, then paid again


def _fate(person: _Person, age: int, *, oldest: bool) -> _Fate:
    """The fate of the month `age` months before this one; `oldest` is the first one loaded."""
    if age == 0 and not person.pays_ahead:
        return _Fate.OPEN
    if 0 < age <= person.arrears:
        return _Fate.PART_PAID if age == person.arrears and person.partial else _Fate.OVERDUE
    if person.repaid and oldest:
        return _Fate.REPAID
    return _Fate.PAID


@dataclass(frozen=True, slots=True)
class _Settlement:
    """What becomes of one customer's invoice of one month in the demo: a month paid is
    topped up just before its run, whose autopay pays it; a month in arrears finds the
    balance empty, and `part` of it is paid afterwards; a repaid one is then refunded
    `refund` and paid again."""

    age: int
    fate: _Fate
    bill: Decimal  # what the run bills for the month: the tariffs' whole monthly prices
    part: Decimal = Decimal(0)
    refund: Decimal = Decimal(0)

    @property
    def autopaid(self) -> bool:
        return self.fate in (_Fate.PAID, _Fate.REPAID)


@dataclass(slots=True)
class _PaymentPlan:
    row: Row
    movements: list[_Movement]


@dataclass(slots=True)
class _InvoicePlan:
    row: Row
    line: Row  # its one line, whose subscription is known only once inserted
    payments: list[_PaymentPlan]


@dataclass(slots=True)
class _ContractPlan:
    contract: Row
    subscription: Row
    invoices: list[_InvoicePlan]


@dataclass(slots=True)
class _CustomerPlan:
    user: Row
    customer: Row
    contracts: list[_ContractPlan]
    top_up: _PaymentPlan | None  # bulk data: None when nothing was ever on the account
    # The demo's: what becomes of each month the runs bill, and the balance left at the end
    # (empty for bulk data, whose invoices are written with their payments).
    settlements: list[_Settlement]
    balance: Decimal


@dataclass(frozen=True, slots=True)
class _Account:
    """A demo customer as inserted, and what is to become of their invoices."""

    user_id: int
    customer_id: int
    top_up: _PaymentPlan | None
    settlements: list[_Settlement]
    balance: Decimal


class _Generator:
    """Draws people and their billing history; all randomness comes from one seeded stream."""

    def __init__(
        self,
        rng: random.Random,
        *,
        now: datetime,
        this_month: date,
        months: int,
        tariffs: dict[str, _TariffRef],
        namespace: _Namespace,
        password_hash: str,
        second_contract_share: float,
        history: bool,
    ) -> None:
        """`history`: write the invoices and payments of the months (bulk data) rather than
        plan their settlement for after the runs bill them (the demo)."""
        self._rng = rng
        self._now = now
        self._this_month = this_month
        self._history = history
        self._months = months
        self._tariffs = tariffs
        self._namespace = namespace
        self._password_hash = password_hash
        self._second_contract_share = second_contract_share
        self._email_counts: dict[str, int] = {}
        self._customers = 0
        self._subscriptions = 0

    def random_person(self) -> _Person:
        rng = self._rng
        female = rng.random() < 0.5
        first = rng.choice(FEMALE_NAMES if female else MALE_NAMES)
        last = _surname(rng.choice(SURNAMES), female=female)
        places = [self._place()]
        if rng.random() < self._second_contract_share:
            places.append(self._place())
        arrears = rng.choices((0, 1, 2), weights=(78, 15, 7))[0]
        return _Person(
            full_name=f"{first} {last}",
            email=self._email(f"{first}.{last}".lower()),
            phone=f"+79{rng.randrange(10**9):09d}",
            places=tuple(places),
            balance=Decimal(rng.randrange(5, 200) * 10) if rng.random() < 0.5 else Decimal(0),
            card_share=rng.choice((0.9, 0.6, 0.2)),
            arrears=arrears,
            partial=arrears > 0 and rng.random() < 0.4,
        )

    def plan(self, person: _Person) -> _CustomerPlan:
        rng = self._rng
        self._customers += 1
        starts = [self._start_date() for _ in person.places]
        signed_up = datetime.combine(
            min(starts) - timedelta(days=1), time(rng.randint(8, 21), rng.randint(0, 59)), UTC
        )
        contract_plans = []
        for (code, address), start in zip(person.places, starts, strict=True):
            tariff = self._tariffs[code]
            self._subscriptions += 1
            contract_plans.append(
                _ContractPlan(
                    contract={
                        "tariff_id": tariff.id,
                        "address": address,
                        "status": ContractStatus.ACTIVE,
                        "start_date": start,
                        "end_date": None,
                    },
                    subscription={
                        "tariff_id": tariff.id,
                        "status": SubscriptionStatus.ACTIVE,
                        "started_at": datetime.combine(start, time(10), UTC),
                        "ended_at": None,
                    },
                    invoices=(
                        self._invoices(person, tariff, start, self._subscriptions)
                        if self._history
                        else []
                    ),
                )
            )
        # The opening top-up pays for the balance payments.
        from_balance = sum(
            (
                payment.row["amount"]
                for contract in contract_plans
                for invoice in contract.invoices
                for payment in invoice.payments
                if payment.row["method"] is PaymentMethod.BALANCE
            ),
            Decimal(0),
        )
        return _CustomerPlan(
            user={
                "email": person.email,
                "role": Role.CUSTOMER,
                "is_active": True,
                "password_hash": self._password_hash,
                "created_at": signed_up,
            },
            customer={
                "contract_num": self._namespace.contract_num(self._customers),
                "full_name": person.full_name,
                "phone": person.phone,
                "balance": Decimal("0.00"),  # the ledger's postings bring it to person.balance
                "currency": CURRENCY,
                "created_at": signed_up,
            },
            contracts=contract_plans,
            top_up=_top_up(person.balance + from_balance, signed_up) if self._history else None,
            settlements=[] if self._history else self._settlements(person),
            balance=person.balance,
        )

    def _settlements(self, person: _Person) -> list[_Settlement]:
        """Every month billed in whole, at the tariffs' prices: the subscriptions start before
        the first month loaded (`_start_date`)."""
        bill = sum((self._tariffs[code].monthly_price for code, _ in person.places), Decimal(0))
        plans = []
        for age in range(self._months - 1, -1, -1):
            fate = _fate(person, age, oldest=age == self._months - 1)
            if fate is _Fate.PART_PAID:
                share = Decimal(self._rng.randint(25, 75)) / 100
                plans.append(_Settlement(age, fate, bill, part=(bill * share).quantize(Decimal(1))))
            elif fate is _Fate.REPAID:
                refund = (bill / 10).quantize(Decimal("0.01"))
                plans.append(_Settlement(age, fate, bill, refund=refund))
            else:
                plans.append(_Settlement(age, fate, bill))
        return plans

    def _invoices(
        self, person: _Person, tariff: _TariffRef, start: date, subscription_no: int
    ) -> list[_InvoicePlan]:
        plans = []
        for age in range(self._months - 1, -1, -1):
            period = Period(_add_months(self._this_month, -age))
            charge = prorate(tariff.monthly_price, period, [Span(start)])
            if charge is None:  # _start_date starts every subscription before the first month
                raise AssertionError(f"a demo subscription from {start} bills no {period}")
            price = charge.amount
            issued_at = min(datetime.combine(period.start, time(3), UTC), self._now)
            due = period.start.replace(day=15)
            line = {
                "tariff_id": tariff.id,
                "period_start": period.start,
                "period_end": period.end,
                "first_day": charge.first_day,
                "last_day": charge.last_day,
                "days": charge.days,
                "unit_price": charge.unit_price,
                "amount": price,
                "currency": CURRENCY,
                "description": charge.describe(tariff.name),
            }
            row = {
                "number": self._namespace.invoice_number(period.start, subscription_no),
                "period_start": period.start,
                "period_end": period.end,
                "amount": price,
                "currency": CURRENCY,
                "issued_at": issued_at,
                "due_date": due,
                "created_at": issued_at,
            }
            fate = _fate(person, age, oldest=age == self._months - 1)
            if fate is _Fate.OPEN:
                plans.append(_InvoicePlan({**row, "status": InvoiceStatus.ISSUED}, line, []))
            elif fate is _Fate.PART_PAID:
                share = Decimal(self._rng.randint(25, 75)) / 100
                paid = [self._payment(person, (price * share).quantize(Decimal(1)), issued_at)]
                plans.append(_InvoicePlan({**row, "status": InvoiceStatus.OVERDUE}, line, paid))
            elif fate is _Fate.OVERDUE:
                paid = [self._failed_attempt(price, due)] if self._rng.random() < 0.5 else []
                plans.append(_InvoicePlan({**row, "status": InvoiceStatus.OVERDUE}, line, paid))
            elif fate is _Fate.REPAID:
                raise ValueError("bulk data draws no repaid month: refunds are the demo's")
            else:
                paid = [self._payment(person, price, issued_at)]
                plans.append(_InvoicePlan({**row, "status": InvoiceStatus.PAID}, line, paid))
        return plans

    def _payment(self, person: _Person, amount: Decimal, issued_at: datetime) -> _PaymentPlan:
        rng = self._rng
        card = rng.random() < person.card_share
        at = min(issued_at + timedelta(seconds=rng.randrange(14 * 86400)), self._now)
        debit = LedgerAccount.PROVIDER_CLEARING if card else LedgerAccount.CUSTOMER_BALANCE
        movement = _Movement(debit, LedgerAccount.RECEIVABLE, amount, at)
        return _PaymentPlan(
            {
                "amount": amount,
                "currency": CURRENCY,
                "method": PaymentMethod.CARD if card else PaymentMethod.BALANCE,
                "status": PaymentStatus.SUCCEEDED,
                "refunded_amount": Decimal("0.00"),
                "created_at": at,
            },
            [movement],
        )

    def _failed_attempt(self, amount: Decimal, due: date) -> _PaymentPlan:
        """A declined card: why the invoice went overdue. No money moved, so no entries."""
        rng = self._rng
        at = datetime.combine(due, time(rng.randint(8, 22), rng.randint(0, 59)), UTC)
        return _PaymentPlan(
            {
                "amount": amount,
                "currency": CURRENCY,
                "method": PaymentMethod.CARD,
                "status": PaymentStatus.FAILED,
                "refunded_amount": Decimal("0.00"),
                "created_at": min(at + timedelta(days=rng.randint(1, 5)), self._now),
            },
            [],
        )

    def _place(self) -> tuple[str, str]:
        rng = self._rng
        city, _, streets = rng.choices(CITIES, weights=[weight for _, weight, _ in CITIES])[0]
        street = f"{city}, {rng.choice(streets)} {rng.randint(1, 140)}"
        if rng.random() < BUSINESS_SHARE:
            return "business-500", f"{street}, office {rng.randint(1, 9)}{rng.randint(1, 20):02d}"
        codes = list(HOME_TARIFF_WEIGHTS)
        code = rng.choices(codes, weights=list(HOME_TARIFF_WEIGHTS.values()))[0]
        return code, f"{street}, apt {rng.randint(1, 300)}"

    def _start_date(self) -> date:
        """Before the first invoiced month, so every subscription is billed for all of them."""
        month = _add_months(self._this_month, -self._months - self._rng.randrange(36))
        return month.replace(day=self._rng.randint(1, 28))

    def _email(self, local: str) -> str:
        count = self._email_counts.get(local, 0) + 1
        self._email_counts[local] = count
        suffix = "" if count == 1 else str(count)
        return f"{local}{suffix}@{self._namespace.email_domain}"


def _top_up(amount: Decimal, at: datetime) -> _PaymentPlan | None:
    """A card payment of no invoice, as `topUpBalance` makes once the acquirer confirms."""
    if not amount:
        return None
    return _PaymentPlan(
        {
            "amount": amount,
            "currency": CURRENCY,
            "method": PaymentMethod.CARD,
            "status": PaymentStatus.SUCCEEDED,
            "refunded_amount": Decimal("0.00"),
            "created_at": at,
        },
        [_Movement(LedgerAccount.PROVIDER_CLEARING, LedgerAccount.CUSTOMER_BALANCE, amount, at)],
    )


# The two documented customer logins: alice owes money, bob has paid everything.
_ALICE = _Person(
    full_name="Alice Smirnova",
    email="alice@example.com",
    phone="+79161234567",
    places=(
        ("home-500", "Moscow, Tverskaya st. 12, apt 45"),
        ("home-100", "Moscow Oblast, Odintsovo, Sosnovaya st. 3"),
    ),
    balance=Decimal("420.00"),
    card_share=0.6,
    arrears=1,
)
_BOB = _Person(
    full_name="Bob Kuznetsov",
    email="bob@example.com",
    phone="+79217654321",
    places=(("home-1000", "Saint Petersburg, Nevsky pr. 28, apt 7"),),
    balance=Decimal("150.00"),
    card_share=0.9,
    pays_ahead=True,
)


async def load_demo(
    db: Database,
    *,
    progress: Progress | None = None,
    customers: int = 50,
    seed: int = 2026,
    zone: ZoneInfo = DEMO_ZONE,
    due_days: int = DEMO_DUE_DAYS,
    run_at: time = DEMO_RUN_AT,
) -> bool:
    """Load the demo once; False (and nothing written) when the demo logins already exist.

    The people, their contracts and subscriptions go in one transaction, so a load
    interrupted there leaves nothing behind and simply runs again. The staff users are
    inserted first, so a concurrent loader blocks on their unique emails and, once this one
    commits, fails with IntegrityError and reports False. Then the invoice run bills each
    of the last `DEMO_MONTHS` months, as the worker would have on its 1st at `run_at`
    (`zone`, `due_days`, `run_at`: as `KABINET_BILLING_TIMEZONE`, `KABINET_INVOICE_DUE_DAYS`,
    `KABINET_BILLING_RUN_AT`), with full autopay: the customers run prepaid balances, so a
    month paid is topped up the hour before its run, which pays it from the balance. After
    the runs each tops up what they keep on the balance; the part payments of months in
    arrears and a refund go through the payment actions (`_settle`), and the overdue
    marking marks what is left unpaid past due, and the support desk gets its operators and
    tickets (gateway/demo_support.py). Those steps commit as they go: a load stopped during
    them leaves its customers with what was done so far.
    """
    if customers < 2:
        raise ValueError("the demo needs at least 2 customers (alice and bob)")
    if await _demo_loaded(db):
        return False
    password_hash = await asyncio.to_thread(hash_password, DEMO_PASSWORD)
    now = utcnow()
    this_month = now.astimezone(zone).date().replace(day=1)
    accounts: list[_Account] = []
    try:
        async with db.transaction() as session:
            staff_ids = await _insert_returning_ids(session, users, _staff_rows(password_hash, now))
            generator = _Generator(
                random.Random(seed),
                now=now,
                this_month=this_month,
                months=DEMO_MONTHS,
                tariffs=await _ensure_tariffs(session),
                namespace=_DEMO_NAMESPACE,
                password_hash=password_hash,
                second_contract_share=DEMO_SECOND_CONTRACT_SHARE,
                history=False,
            )
            people = [_ALICE, _BOB]
            people += [generator.random_person() for _ in range(customers - 2)]
            if customers > 2:
                people[2] = dataclasses.replace(people[2], repaid=True)
            _report(progress, 0, customers)
            for start in range(0, customers, DEMO_BATCH):
                plans = [generator.plan(person) for person in people[start : start + DEMO_BATCH]]
                accounts += (await _insert_people(session, plans))[0]
                _report(progress, start + len(plans), customers)
    except IntegrityError:
        if await _demo_loaded(db):
            return False
        raise

    def fired(period: Period) -> datetime:
        """The month's run time; this month's, if still to come, is when the demo loads."""
        return min(datetime.combine(period.start, run_at, zone), now)

    for age in range(DEMO_MONTHS - 1, -1, -1):
        period = Period(_add_months(this_month, -age))
        # Prepaid: who pays the month tops up its bill the hour before the run, whose
        # autopay pays it from the balance; the others' balance is empty then.
        at = fired(period)
        await _book_top_ups(
            db,
            [
                (account.customer_id, settlement.bill, at - timedelta(hours=1))
                for account in accounts
                for settlement in account.settlements
                if settlement.age == age and settlement.autopaid
            ],
        )
        await run_invoices(
            db,
            period,
            zone=zone,
            due_days=due_days,
            autopay=AutopayMode.FULL,
            clock=ManualClock(at),
        )
    # Then each tops up what they keep on the balance and the parts they pay of a month in
    # arrears, which `_settle` pays, with the refund.
    await _book_top_ups(
        db,
        [
            (
                account.customer_id,
                account.balance + sum((s.part for s in account.settlements), Decimal(0)),
                now,
            )
            for account in accounts
        ],
    )
    await _settle(db, accounts, this_month, Viewer(staff_ids[0], Role.ADMIN))  # the admin
    # The worker's overdue pass right after this month's run: the months left unpaid are
    # past due, this month's not yet, whatever day the demo loads on.
    await mark_overdue_invoices(db, zone=zone, clock=ManualClock(fired(Period(this_month))))
    await _promise(db, accounts[2:])
    await load_support_demo(
        db,
        admin=Viewer(staff_ids[0], Role.ADMIN),
        third_customer_id=accounts[min(2, len(accounts) - 1)].customer_id,
        now=now,
    )
    await _history_told(db)
    return True


DEMO_PROMISE = Decimal("50.00")


async def _promise(db: Database, accounts: Sequence[_Account]) -> None:
    """One customer in arrears takes a promised payment (domains/billing/promised_payment.py)
    too small to pay off their oldest month, so every invoice keeps the fate `_fate` gave it:
    the balance and the credit pay part of that month, which stays overdue."""
    for account in accounts:
        unpaid = [s for s in account.settlements if s.fate in (_Fate.OVERDUE, _Fate.PART_PAID)]
        if not unpaid:
            continue
        oldest = max(unpaid, key=lambda s: s.age)
        if oldest.bill - oldest.part > account.balance + DEMO_PROMISE:
            customer = Viewer(account.user_id, Role.CUSTOMER, account.customer_id)
            terms = PromiseTerms(Decimal("500.00"), 3, 2)
            await activate_promised_payment(db, customer, amount=DEMO_PROMISE, terms=terms)
            return


async def _history_told(db: Database) -> None:
    """The demo's months happened before anyone was there to tell: the notification
    consumer takes their events as handled, so `make dev` shows only what happens next
    (not an email per invoice of the last months)."""
    outbox = OutboxEvent.__table__
    async with db.transaction() as session:
        await session.execute(
            insert(ProcessedEvent.__table__).from_select(
                ["consumer", "event_id", "processed_at"],
                select(literal(NOTIFICATIONS_CONSUMER), outbox.c.id, outbox.c.occurred_at),
            )
        )


async def _settle(
    db: Database, accounts: Sequence[_Account], this_month: date, admin: Viewer
) -> None:
    """What the runs' autopay left: checks that it paid the months paid and nothing else,
    pays the parts of months in arrears and refunds the repaid month, through
    `pay_invoice` and `refund_payment` as the API does."""
    for account in accounts:
        await _settle_account(db, account, this_month, admin)


async def _settle_account(db: Database, account: _Account, this_month: date, admin: Viewer) -> None:
    """One customer's settlements, oldest month first."""
    customer = Viewer(account.user_id, Role.CUSTOMER, account.customer_id)
    for settlement in account.settlements:
        period = Period(_add_months(this_month, -settlement.age))
        invoice = await _run_invoice(db, account.customer_id, period)
        if invoice.amount != settlement.bill:
            raise AssertionError(f"the run billed {invoice.number} {invoice.amount}")
        if settlement.autopaid != (invoice.status is InvoiceStatus.PAID):
            raise AssertionError(f"the run's autopay left {invoice.number} {invoice.status}")
        if settlement.fate is _Fate.PART_PAID:
            await _pay(db, customer, invoice.id, settlement.part, "part")
        elif settlement.fate is _Fate.REPAID:
            await refund_payment(
                db,
                admin,
                payment_id=await _autopayment(db, invoice.id),
                amount=settlement.refund,
                reason="goodwill for an outage",
                idempotency_key=f"demo-{invoice.id}-refund",
            )
            await _pay(db, customer, invoice.id, None, "rest")


async def _autopayment(db: Database, invoice_id: int) -> int:
    """The payment the run's autopay made of the invoice: its only one."""
    async with db.connect() as conn:
        return (
            await conn.execute(select(payments.c.id).where(payments.c.invoice_id == invoice_id))
        ).scalar_one()


async def _book_top_ups(db: Database, top_ups: Sequence[tuple[int, Decimal, datetime]]) -> None:
    """Card top-ups of the balance (customer, amount, when), as the acquirer's webhook books
    them, in one transaction."""
    booked = [
        (customer_id, None, plan)
        for customer_id, amount, at in top_ups
        if (plan := _top_up(amount, at)) is not None
    ]
    async with db.transaction() as session:
        await _book_payments(session, booked)


async def _run_invoice(db: Database, customer_id: int, period: Period) -> InvoiceRow:
    number = invoice_number(customer_id, period)
    async with db.read() as reader:
        [invoice] = await reader.fetch(_INVOICE_BY_NUMBER, number=number)
    return invoice


async def _pay(
    db: Database, customer: Viewer, invoice_id: int, amount: Decimal | None, step: str
) -> int:
    """A balance payment of the invoice (None: what is due); its key names the step, so the
    demo's payments are told apart as a client's retries would not be."""
    result = await pay_invoice(
        db,
        customer,
        invoice_id=invoice_id,
        method=PaymentMethod.BALANCE,
        amount=amount,
        idempotency_key=f"demo-{invoice_id}-{step}",
    )
    return result.payment_id


async def load_bulk(
    db: Database,
    *,
    customers: int,
    invoices_per_customer: int,
    seed: int = 1,
    progress: Progress | None = None,
) -> None:
    """Fill a database for benchmarks: one contract per customer, so the counts are exact.

    Batches commit one by one (a benchmark wants speed, not atomicity); the numbers and
    emails live in the seed's own namespace, so this runs beside the demo, once per seed.
    All users share the demo password, hashed once.
    """
    if customers < 0 or invoices_per_customer < 1:
        raise ValueError("customers must be >= 0 and invoices_per_customer >= 1")
    password_hash = await asyncio.to_thread(hash_password, DEMO_PASSWORD)
    async with db.transaction() as session:
        known_tariffs = await _ensure_tariffs(session)
    now = utcnow()
    generator = _Generator(
        random.Random(seed),
        now=now,
        this_month=now.date().replace(day=1),
        months=invoices_per_customer,
        tariffs=known_tariffs,
        namespace=_bulk_namespace(seed),
        password_hash=password_hash,
        second_contract_share=0.0,
        history=True,
    )
    _report(progress, 0, customers)
    for start in range(0, customers, BULK_BATCH):
        size = min(BULK_BATCH, customers - start)
        plans = [generator.plan(generator.random_person()) for _ in range(size)]
        async with db.transaction() as session:
            await _insert_history(session, plans)
        _report(progress, start + size, customers)


async def _demo_loaded(db: Database) -> bool:
    """Any demo login counts: the load could not insert it again anyway (unique email)."""
    stmt = select(func.count()).select_from(users).where(users.c.email.in_(DEMO_LOGINS))
    async with db.connect() as conn:
        return bool(await conn.scalar(stmt))


def _staff_rows(password_hash: str, now: datetime) -> list[Row]:
    joined = now - timedelta(days=31 * (DEMO_MONTHS + 1))
    return [
        {
            "email": email,
            "role": role,
            "is_active": True,
            "password_hash": password_hash,
            "created_at": joined,
        }
        for email, role in DEMO_LOGINS.items()
        if role is not Role.CUSTOMER
    ]


async def _ensure_tariffs(session: AsyncSession) -> dict[str, _TariffRef]:
    """The catalogue by code; existing tariffs are reused, so loaders can run side by side."""
    codes = [row["code"] for row in TARIFFS]
    stmt = select(tariffs.c.code, tariffs.c.id, tariffs.c.name, tariffs.c.monthly_price).where(
        tariffs.c.code.in_(codes)
    )
    known = {
        code: _TariffRef(id_, name, price) for code, id_, name, price in await session.execute(stmt)
    }
    missing = [{**row, "currency": CURRENCY} for row in TARIFFS if row["code"] not in known]
    for row, id_ in zip(
        missing, await _insert_returning_ids(session, tariffs, missing), strict=True
    ):
        known[row["code"]] = _TariffRef(id_, row["name"], row["monthly_price"])
        history = [
            {"tariff_id": id_, "effective_from": day, "monthly_price": Decimal(price)}
            for day, price in PRICE_HISTORY.get(row["code"], ())
        ]
        if history:
            await session.execute(insert(TariffPrice.__table__), history)
    return known


Subscribed = tuple[int, int, _ContractPlan]  # customer id, subscription id, the contract's plan


async def _insert_people(
    session: AsyncSession, plans: Sequence[_CustomerPlan]
) -> tuple[list[_Account], list[Subscribed]]:
    """Users, customers, contracts and subscriptions: one executemany per table, parents
    first, each child row given its parent's new id."""
    user_ids = await _insert_returning_ids(session, users, [plan.user for plan in plans])
    customer_ids = await _insert_returning_ids(
        session,
        customers_table,
        [{**plan.customer, "user_id": uid} for plan, uid in zip(plans, user_ids, strict=True)],
    )
    owned = [
        (customer_id, contract)
        for plan, customer_id in zip(plans, customer_ids, strict=True)
        for contract in plan.contracts
    ]
    contract_ids = await _insert_returning_ids(
        session, contracts, [{**c.contract, "customer_id": cid} for cid, c in owned]
    )
    subscription_ids = await _insert_returning_ids(
        session,
        subscriptions,
        [
            {**c.subscription, "customer_id": cid, "contract_id": contract_id}
            for (cid, c), contract_id in zip(owned, contract_ids, strict=True)
        ],
    )
    accounts = [
        _Account(user_id, customer_id, plan.top_up, plan.settlements, plan.balance)
        for plan, user_id, customer_id in zip(plans, user_ids, customer_ids, strict=True)
    ]
    subscribed = [(cid, sid, c) for (cid, c), sid in zip(owned, subscription_ids, strict=True)]
    return accounts, subscribed


async def _insert_history(session: AsyncSession, plans: Sequence[_CustomerPlan]) -> None:
    """Bulk data: the people, their invoices with their one line each, posted as issued, and
    their payments and top-ups."""
    accounts, subscribed = await _insert_people(session, plans)
    billed = [(cid, sid, invoice) for cid, sid, c in subscribed for invoice in c.invoices]
    invoice_ids = await _insert_returning_ids(
        session,
        invoices,
        [{**inv.row, "customer_id": cid, "subscription_id": sid} for cid, sid, inv in billed],
    )
    await session.execute(
        insert(invoice_lines),
        [
            {**inv.line, "invoice_id": invoice_id, "subscription_id": sid}
            for (_, sid, inv), invoice_id in zip(billed, invoice_ids, strict=True)
        ],
    )
    await post_issuance(
        session,
        [
            IssuedInvoice(
                invoice_id, cid, inv.row["amount"], inv.row["currency"], inv.row["issued_at"]
            )
            for (cid, _, inv), invoice_id in zip(billed, invoice_ids, strict=True)
            if inv.row["status"] in ISSUED
        ],
    )
    await _book_payments(
        session,
        [
            *_top_ups(accounts),
            *(
                (cid, invoice_id, payment)
                for (cid, _, inv), invoice_id in zip(billed, invoice_ids, strict=True)
                for payment in inv.payments
            ),
        ],
    )


Paid = tuple[int, int | None, _PaymentPlan]  # customer id, invoice id (none: a top-up), plan


def _top_ups(accounts: Sequence[_Account]) -> list[Paid]:
    return [
        (account.customer_id, None, account.top_up)
        for account in accounts
        if account.top_up is not None
    ]


async def _book_payments(session: AsyncSession, paid: Sequence[Paid]) -> None:
    """The payments' rows and their ledger movements."""
    payment_ids = await _insert_returning_ids(
        session,
        payments,
        [{**pay.row, "customer_id": cid, "invoice_id": iid} for cid, iid, pay in paid],
    )
    movements = [
        (movement.entries(cid, invoice_id=iid, payment_id=payment_id), movement.at)
        for (cid, iid, pay), payment_id in zip(paid, payment_ids, strict=True)
        for movement in pay.movements
    ]
    await post_movements(session, movements)


async def _insert_returning_ids(session: AsyncSession, table: Table, rows: list[Row]) -> list[int]:
    if not rows:
        return []
    stmt = insert(table).returning(table.c.id, sort_by_parameter_order=True)
    return list((await session.execute(stmt, rows)).scalars())


def _report(progress: Progress | None, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)


def _surname(masculine: str, *, female: bool) -> str:
    if not female:
        return masculine
    if masculine.endswith("sky"):
        return masculine.removesuffix("sky") + "skaya"
    return masculine + "a"


def _add_months(month: date, delta: int) -> date:
    index = month.year * 12 + month.month - 1 + delta
    return date(index // 12, index % 12 + 1, 1)
