"""Daily counters kept by the analytics consumer: payments per method and currency, and
invoices issued per currency."""

from datetime import date
from decimal import Decimal

from sqlalchemy import CheckConstraint, Date, Integer, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from domains.base import Base

# Sums of many payments outgrow a single payment's numeric(12,2).
TotalNumeric = Numeric(16, 2, asdecimal=True)


class PaymentsDaily(Base):
    __tablename__ = "analytics_payments_daily"
    __table_args__ = (
        CheckConstraint("payments >= 0", name="payments_non_negative"),
        CheckConstraint("refunds >= 0", name="refunds_non_negative"),
    )

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    method: Mapped[str] = mapped_column(String(16), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    payments: Mapped[int] = mapped_column(Integer, default=0)
    amount: Mapped[Decimal] = mapped_column(TotalNumeric, default=Decimal(0))
    refunds: Mapped[int] = mapped_column(Integer, default=0)
    refunded: Mapped[Decimal] = mapped_column(TotalNumeric, default=Decimal(0))


class InvoicesDaily(Base):
    __tablename__ = "analytics_invoices_daily"
    __table_args__ = (CheckConstraint("invoices >= 0", name="invoices_non_negative"),)

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    invoices: Mapped[int] = mapped_column(Integer, default=0)
    billed: Mapped[Decimal] = mapped_column(TotalNumeric, default=Decimal(0))
