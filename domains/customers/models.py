"""Customer tables: the subscriber account, tariffs, contracts and subscriptions."""

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from domains.base import Base, BigId, MoneyNumeric, UTCDateTime
from domains.clock import utcnow
from domains.enums import stored_enum


class Segment(StrEnum):
    HOME = "home"
    BUSINESS = "business"


class ContractStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    TERMINATED = "terminated"


class SubscriptionStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    # Cut off for debt (domains/billing/suspension.py); its days are dated by its
    # `subscription_suspensions` rows, which the monthly run leaves unbilled.
    SUSPENDED = "suspended"


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (
        CheckConstraint("balance >= 0", name="balance_not_negative"),
        # Staff search by name is a prefix/substring match; the index serves prefix lookups.
        Index("ix_customers_full_name", "full_name"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    contract_num: Mapped[str] = mapped_column(String(32), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(32))
    balance: Mapped[Decimal] = mapped_column(MoneyNumeric, default=Decimal("0.00"))
    currency: Mapped[str] = mapped_column(String(3), default="RUB")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Tariff(Base):
    __tablename__ = "tariffs"
    __table_args__ = (
        CheckConstraint("monthly_price > 0", name="monthly_price_positive"),
        CheckConstraint("download_mbps > 0 AND upload_mbps > 0", name="speeds_positive"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    segment: Mapped[Segment] = mapped_column(stored_enum(Segment, "tariff_segment"))
    monthly_price: Mapped[Decimal] = mapped_column(MoneyNumeric)
    currency: Mapped[str] = mapped_column(String(3), default="RUB")
    download_mbps: Mapped[int] = mapped_column(Integer)
    upload_mbps: Mapped[int] = mapped_column(Integer)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)


class Contract(Base):
    __tablename__ = "contracts"
    __table_args__ = (
        CheckConstraint("end_date IS NULL OR end_date >= start_date", name="dates_ordered"),
        # Staff look a service address up by its street.
        Index("ix_contracts_city_street", "city", "street", "house"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    tariff_id: Mapped[int] = mapped_column(ForeignKey("tariffs.id"), index=True)
    # The display form; written from the parts below by staff (contract_admin.py), a free
    # text on contracts from before them, which have no parts.
    address: Mapped[str] = mapped_column(String(300))
    region: Mapped[str | None] = mapped_column(String(100))
    city: Mapped[str | None] = mapped_column(String(100))
    street: Mapped[str | None] = mapped_column(String(150))
    house: Mapped[str | None] = mapped_column(String(20))
    flat: Mapped[str | None] = mapped_column(String(20))
    postal_code: Mapped[str | None] = mapped_column(String(12), index=True)
    status: Mapped[ContractStatus] = mapped_column(
        stored_enum(ContractStatus, "contract_status"), default=ContractStatus.ACTIVE
    )
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        CheckConstraint("ended_at IS NULL OR ended_at >= started_at", name="times_ordered"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    contract_id: Mapped[int] = mapped_column(ForeignKey("contracts.id"), index=True)
    tariff_id: Mapped[int] = mapped_column(ForeignKey("tariffs.id"), index=True)
    status: Mapped[SubscriptionStatus] = mapped_column(
        stored_enum(SubscriptionStatus, "subscription_status"), default=SubscriptionStatus.ACTIVE
    )
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TariffPrice(Base):
    """A tariff's monthly price from a day on (in the billing time zone): the monthly run
    bills each day at the price in force on it (domains/billing/billable.py). A tariff
    without rows costs its `monthly_price` on every day; its first dated change also writes
    the price it had before, from `BEFORE_ANY_PRICE`, so the days before the change keep it.
    `tariffs.monthly_price` is the price in force today (kept so by the change, and by the
    worker on the day a change takes effect): what the catalogue shows."""

    __tablename__ = "tariff_prices"
    __table_args__ = (
        CheckConstraint("monthly_price > 0", name="monthly_price_positive"),
        UniqueConstraint("tariff_id", "effective_from", name="uq_tariff_prices_tariff_day"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tariff_id: Mapped[int] = mapped_column(ForeignKey("tariffs.id"))
    effective_from: Mapped[date] = mapped_column(Date)
    monthly_price: Mapped[Decimal] = mapped_column(MoneyNumeric)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SubscriptionTariff(Base):
    """A subscription's tariff from a day on (in the billing time zone), up to the day
    before its next row: the history the monthly run bills, one line per tariff span. A
    subscription without rows has had `subscriptions.tariff_id` since it started; its first
    change also writes that tariff from its first day. A row whose day is still ahead is a
    scheduled change (a downgrade at the period's end), which the customer may cancel:
    `subscriptions.tariff_id` is the tariff in force today."""

    __tablename__ = "subscription_tariffs"
    __table_args__ = (
        UniqueConstraint("subscription_id", "first_day", name="uq_subscription_tariffs_day"),
        # The run reads a batch's customers' spans.
        Index("ix_subscription_tariffs_customer", "customer_id", "first_day"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    tariff_id: Mapped[int] = mapped_column(ForeignKey("tariffs.id"))
    first_day: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SubscriptionPause(Base):
    """A voluntary pause ("добровольная блокировка"): the days from `first_day` up to the day
    before `until` (or before `resumed_on`, when the customer came back early) are not
    billed. The subscription's status says whether it is paused now; the worker flips it on
    both days (domains/customers/pause.py)."""

    __tablename__ = "subscription_pauses"
    __table_args__ = (
        CheckConstraint("until > first_day", name="days_ordered"),
        CheckConstraint(
            "resumed_on IS NULL OR (resumed_on >= first_day AND resumed_on <= until)",
            name="resumed_within",
        ),
        Index("ix_subscription_pauses_customer", "customer_id", "first_day"),
        Index("ix_subscription_pauses_subscription", "subscription_id", "first_day"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    first_day: Mapped[date] = mapped_column(Date)
    until: Mapped[date] = mapped_column(Date)
    resumed_on: Mapped[date | None] = mapped_column(Date)
    # Who asked: the customer, or an operator on their behalf.
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
