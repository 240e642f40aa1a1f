"""Billing tables: invoices and their lines, payments, refunds, idempotency keys and the
double-entry ledger."""

import uuid
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import (
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from domains.base import Base, BigId, MoneyNumeric, UTCDateTime
from domains.clock import utcnow
from domains.enums import stored_enum


class InvoiceStatus(StrEnum):
    DRAFT = "draft"
    ISSUED = "issued"
    PAID = "paid"
    OVERDUE = "overdue"
    VOID = "void"


class InvoiceKind(StrEnum):
    """What made an invoice, and so what keeps it unique."""

    # The monthly run's: a customer account's bill for one period, a line per subscription
    # billed. At most one per customer and period, so a run fired twice bills once.
    MONTHLY = "monthly"
    # Made one at a time: each per-subscription invoice from before the run (migration 0008
    # gave it its line) and any made by hand. Its lines keep a subscription billed once.
    SINGLE = "single"


class PaymentMethod(StrEnum):
    BALANCE = "balance"
    CARD = "card"


class PaymentStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUNDED = "refunded"


class LedgerAccount(StrEnum):
    CUSTOMER_BALANCE = "customer_balance"
    RECEIVABLE = "receivable"
    PROVIDER_CLEARING = "provider_clearing"
    REVENUE = "revenue"
    # What a customer owes of a promised payment (domains/billing/promised_payment.py):
    # debited when it is granted (the balance credited), credited as it is repaid.
    PROMISED_CREDIT = "promised_credit"


class EntrySide(StrEnum):
    DEBIT = "debit"
    CREDIT = "credit"


class Invoice(Base):
    __tablename__ = "invoices"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("period_end >= period_start", name="period_ordered"),
        # The portal lists a customer's invoices newest first; this index serves that order.
        Index("ix_invoices_customer_period", "customer_id", "period_start", "id"),
        # One monthly invoice per customer and period, however often the run fires; the
        # per-subscription invoices from before it may be several for one customer and period.
        Index(
            "uq_invoices_customer_period",
            "customer_id",
            "period_start",
            unique=True,
            postgresql_where=text("kind = 'monthly'"),
            sqlite_where=text("kind = 'monthly'"),
        ),
        # Overdue marking walks the issued invoices by due date (invoice_overdue.py); paid
        # and overdue ones, most of the table, are not in it.
        Index(
            "ix_invoices_issued_due",
            "due_date",
            "id",
            postgresql_where=text("status = 'issued'"),
            sqlite_where=text("status = 'issued'"),
        ),
        # Dunning walks the overdue invoices by due date (domains/billing/dunning.py,
        # suspension.py): the few unpaid after their due date, not the paid bulk.
        Index(
            "ix_invoices_overdue_due",
            "due_date",
            "id",
            postgresql_where=text("status = 'overdue'"),
            sqlite_where=text("status = 'overdue'"),
        ),
        # Only the per-subscription invoices from before the run name a subscription: the
        # monthly ones (nearly all) stay out of the index, so the run does not write to it.
        Index(
            "ix_invoices_subscription_id",
            "subscription_id",
            postgresql_where=text("subscription_id IS NOT NULL"),
            sqlite_where=text("subscription_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    # The subscription of a per-subscription invoice from before the monthly run; none on a
    # monthly one, whose lines name theirs.
    subscription_id: Mapped[int | None] = mapped_column(ForeignKey("subscriptions.id"))
    kind: Mapped[InvoiceKind] = mapped_column(
        stored_enum(InvoiceKind, "invoice_kind"),
        default=InvoiceKind.SINGLE,
        server_default=InvoiceKind.SINGLE.value,
    )
    number: Mapped[str] = mapped_column(String(32), unique=True)
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    amount: Mapped[Decimal] = mapped_column(MoneyNumeric)
    currency: Mapped[str] = mapped_column(String(3), default="RUB")
    status: Mapped[InvoiceStatus] = mapped_column(
        stored_enum(InvoiceStatus, "invoice_status"), default=InvoiceStatus.DRAFT
    )
    issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    due_date: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set by voidInvoice (domains/billing/invoice_void.py): who voided it, when and why.
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    voided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    void_reason: Mapped[str | None] = mapped_column(String(500))


class InvoiceLine(Base):
    """One billed item of an invoice: a subscription's days of one period at its tariff's
    monthly price, prorated by day (domains/billing/proration.py). An invoice that has lines
    is their sum (`kabinet billing reconcile` checks it)."""

    __tablename__ = "invoice_lines"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("unit_price > 0", name="unit_price_positive"),
        CheckConstraint("days > 0", name="days_positive"),
        CheckConstraint(
            "period_start <= first_day AND first_day <= last_day AND last_day <= period_end",
            name="days_within_period",
        ),
        # A subscription's day is billed once per period, however often the monthly run
        # fires: a line per tariff (and price) span of the period, each starting on its own
        # day (a subscription billed at all for a period is not read by the run again).
        UniqueConstraint(
            "subscription_id",
            "period_start",
            "first_day",
            name="uq_invoice_lines_subscription_period_day",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"), index=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id"))
    tariff_id: Mapped[int] = mapped_column(ForeignKey("tariffs.id"), index=True)
    # The invoice's billing period.
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    # The first and last day billed, and how many days were (fewer than the span when the
    # subscription paused in between).
    first_day: Mapped[date] = mapped_column(Date)
    last_day: Mapped[date] = mapped_column(Date)
    days: Mapped[int] = mapped_column(Integer)
    # The tariff's monthly price for the period, kept as billed whatever the tariff costs later.
    unit_price: Mapped[Decimal] = mapped_column(MoneyNumeric)
    amount: Mapped[Decimal] = mapped_column(MoneyNumeric)
    currency: Mapped[str] = mapped_column(String(3), default="RUB")
    description: Mapped[str] = mapped_column(String(300))


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(
            "refunded_amount >= 0 AND refunded_amount <= amount", name="refunded_within_amount"
        ),
        Index("ix_payments_customer_created", "customer_id", "created_at", "id"),
        # A provider names each of its payments once; its webhooks find ours by that id.
        UniqueConstraint("provider", "provider_payment_id", name="uq_payments_provider_payment"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # None for a top-up of the balance, which pays no invoice.
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id"), index=True)
    # Denormalised from the invoice so ownership checks and per-customer lists need no join.
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    amount: Mapped[Decimal] = mapped_column(MoneyNumeric)
    currency: Mapped[str] = mapped_column(String(3), default="RUB")
    method: Mapped[PaymentMethod] = mapped_column(stored_enum(PaymentMethod, "payment_method"))
    status: Mapped[PaymentStatus] = mapped_column(
        stored_enum(PaymentStatus, "payment_status"), default=PaymentStatus.PENDING
    )
    refunded_amount: Mapped[Decimal] = mapped_column(MoneyNumeric, default=Decimal("0.00"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Card payments and top-ups: the acquirer, its payment id and where the payer confirms.
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_payment_id: Mapped[str | None] = mapped_column(String(128))
    confirmation_url: Mapped[str | None] = mapped_column(String(2048))


class ProviderEvent(Base):
    """A provider webhook event already handled: a redelivery finds it and changes nothing."""

    __tablename__ = "provider_events"
    __table_args__ = (
        UniqueConstraint("provider", "event_id", name="uq_provider_events_provider_event"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(128))
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"), index=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Transaction(Base):
    """One ledger entry. Entries sharing a `movement_id` balance per currency (debits equal
    credits); rows are never updated or deleted: a correction is a reversing movement."""

    __tablename__ = "transactions"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        # Receivable is kept per invoice; the customer balance belongs to a customer.
        CheckConstraint(
            "account <> 'receivable' OR invoice_id IS NOT NULL", name="receivable_has_invoice"
        ),
        Index("ix_transactions_customer_account", "customer_id", "account", "id"),
        # A payment's entries: the issuance entries (most of the ledger) name none, so they
        # stay out of the index and the run does not write to it.
        Index(
            "ix_transactions_payment_id",
            "payment_id",
            postgresql_where=text("payment_id IS NOT NULL"),
            sqlite_where=text("payment_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    movement_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id"), index=True)
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"))
    account: Mapped[LedgerAccount] = mapped_column(stored_enum(LedgerAccount, "ledger_account"))
    type: Mapped[EntrySide] = mapped_column(stored_enum(EntrySide, "entry_side"))
    amount: Mapped[Decimal] = mapped_column(MoneyNumeric)
    currency: Mapped[str] = mapped_column(String(3), default="RUB")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Refund(Base):
    """Money given back from a payment to the customer's balance, by an admin."""

    __tablename__ = "refunds"
    __table_args__ = (CheckConstraint("amount > 0", name="amount_positive"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    amount: Mapped[Decimal] = mapped_column(MoneyNumeric)
    currency: Mapped[str] = mapped_column(String(3), default="RUB")
    reason: Mapped[str] = mapped_column(String(500))
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IdempotencyKey(Base):
    """A client's retry key, per customer: the first request's fingerprint and its answer,
    the payment a payment request made or the refund a refund request made."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("customer_id", "key", name="uq_idempotency_keys_customer_key"),
        CheckConstraint("expires_at > created_at", name="expires_after_created"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    key: Mapped[str] = mapped_column(String(255))
    # sha256 (hex) of the request's canonical parameters.
    fingerprint: Mapped[str] = mapped_column(String(64))
    # The payment the first request made: what a retry is answered with.
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"))
    refund_id: Mapped[int | None] = mapped_column(ForeignKey("refunds.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class BillingRunState(StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"


class BillingRun(Base):
    """One run of the monthly invoice run for a period, and what it billed. The counts grow
    in each batch's own transaction, so they are what committed, even after a crash; a run
    started again for a period whose run was left `running` (killed) carries that record on."""

    __tablename__ = "billing_runs"
    __table_args__ = (
        CheckConstraint(
            "invoices >= 0 AND lines >= 0 AND amount >= 0 AND autopaid >= 0",
            name="counts_not_negative",
        ),
        # Staff list runs newest first; a run started again finds its period's open record.
        Index("ix_billing_runs_period_state", "period_start", "state"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    state: Mapped[BillingRunState] = mapped_column(
        stored_enum(BillingRunState, "billing_run_state"), default=BillingRunState.RUNNING
    )
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    invoices: Mapped[int] = mapped_column(Integer, default=0)
    lines: Mapped[int] = mapped_column(Integer, default=0)
    amount: Mapped[Decimal] = mapped_column(MoneyNumeric, default=Decimal("0.00"))
    # Invoices the run paid from the balance, in full or in part (domains/billing/autopay.py).
    autopaid: Mapped[int] = mapped_column(Integer, default=0)


class InvoiceReminder(Base):
    """A payment reminder sent for an invoice at one offset from its due date
    (domains/billing/dunning.py): at most one per invoice and offset, whoever sends it."""

    __tablename__ = "invoice_reminders"
    __table_args__ = (
        UniqueConstraint("invoice_id", "offset_days", name="uq_invoice_reminders_invoice_offset"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"))
    # Days from the due date (negative: before it), in the billing time zone.
    offset_days: Mapped[int] = mapped_column(Integer)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SuspensionReason(StrEnum):
    # An invoice billing the subscription stayed unpaid KABINET_SUSPEND_AFTER_DAYS overdue.
    DEBT = "debt"
    # A promised payment ran out unrepaid.
    PROMISE_EXPIRED = "promise_expired"


class SubscriptionSuspension(Base):
    """A subscription's time cut off for debt: from `suspended_at` until `resumed_at` (none:
    still). The subscription's status says whether it is suspended now; these rows say when,
    so the monthly run bills the days around them (domains/billing/billable.py)."""

    __tablename__ = "subscription_suspensions"
    __table_args__ = (
        CheckConstraint("resumed_at IS NULL OR resumed_at >= suspended_at", name="times_ordered"),
        # At most one open suspension per subscription.
        Index(
            "uq_subscription_suspensions_open",
            "subscription_id",
            unique=True,
            postgresql_where=text("resumed_at IS NULL"),
            sqlite_where=text("resumed_at IS NULL"),
        ),
        # The run reads a batch's customers' suspensions; resuming reads one customer's.
        Index("ix_subscription_suspensions_customer", "customer_id", "suspended_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    reason: Mapped[SuspensionReason] = mapped_column(
        stored_enum(SuspensionReason, "suspension_reason")
    )
    suspended_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PromisedPaymentStatus(StrEnum):
    # Within its days and not yet repaid in full: the service runs on it.
    ACTIVE = "active"
    REPAID = "repaid"
    # Its days ran out before it was repaid: the service is suspended until it is.
    EXPIRED = "expired"


class PromisedPayment(Base):
    """A promised payment ("обещанный платёж"): credit on the balance for a few days, repaid
    first by the money that next arrives (domains/billing/promised_payment.py). What is
    still owed (`amount - repaid`) is the customer's `promised_credit` account."""

    __tablename__ = "promised_payments"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("repaid >= 0 AND repaid <= amount", name="repaid_within_amount"),
        CheckConstraint("expires_at > created_at", name="expires_after_created"),
        # The rules count a customer's recent ones and look for an open one.
        Index("ix_promised_payments_customer_created", "customer_id", "created_at"),
        # The worker's expiry walks the active ones by when they end.
        Index(
            "ix_promised_payments_active_expires",
            "expires_at",
            "id",
            postgresql_where=text("status = 'active'"),
            sqlite_where=text("status = 'active'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    amount: Mapped[Decimal] = mapped_column(MoneyNumeric)
    repaid: Mapped[Decimal] = mapped_column(MoneyNumeric, default=Decimal("0.00"))
    currency: Mapped[str] = mapped_column(String(3), default="RUB")
    status: Mapped[PromisedPaymentStatus] = mapped_column(
        stored_enum(PromisedPaymentStatus, "promised_payment_status"),
        default=PromisedPaymentStatus.ACTIVE,
    )
    # Who activated it: the customer, or an operator on their behalf.
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
