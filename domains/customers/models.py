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
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    tariff_id: Mapped[int] = mapped_column(ForeignKey("tariffs.id"), index=True)
    address: Mapped[str] = mapped_column(String(300))
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
