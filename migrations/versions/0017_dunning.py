"""dunning: payment reminders, suspension for debt, promised payments.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04

A subscription gains the `suspended` status, and `subscription_suspensions` dates each
suspension so the monthly run leaves its days unbilled; `invoice_reminders` holds the
reminders sent, one per invoice and offset; `promised_payments` the credits granted, whose
outstanding part is the new ledger account `promised_credit`; a partial index on the overdue
invoices by due date serves the dunning pass.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Money = sa.Numeric(precision=12, scale=2)
Time = sa.DateTime(timezone=True)

_STATUSES = ("active", "paused", "cancelled")
_ACCOUNTS = ("customer_balance", "receivable", "provider_clearing", "revenue")


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(
        *values,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=max(16, *map(len, values)),
    )


def upgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_constraint(op.f("ck_subscriptions_subscription_status"), type_="check")
        batch.create_check_constraint(
            op.f("ck_subscriptions_subscription_status"),
            _in("status", (*_STATUSES, "suspended")),
        )
    with op.batch_alter_table("transactions") as batch:
        batch.drop_constraint(op.f("ck_transactions_ledger_account"), type_="check")
        batch.create_check_constraint(
            op.f("ck_transactions_ledger_account"), _in("account", (*_ACCOUNTS, "promised_credit"))
        )

    op.create_index(
        op.f("ix_invoices_overdue_due"),
        "invoices",
        ["due_date", "id"],
        postgresql_where=sa.text("status = 'overdue'"),
        sqlite_where=sa.text("status = 'overdue'"),
    )
    op.create_table(
        "invoice_reminders",
        sa.Column("id", BigId, nullable=False),
        sa.Column("invoice_id", BigId, nullable=False),
        sa.Column("offset_days", sa.Integer(), nullable=False),
        sa.Column("sent_at", Time, nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_invoice_reminders_invoice_id_invoices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_reminders")),
        sa.UniqueConstraint(
            "invoice_id", "offset_days", name=op.f("uq_invoice_reminders_invoice_offset")
        ),
    )

    op.create_table(
        "subscription_suspensions",
        sa.Column("id", BigId, nullable=False),
        sa.Column("subscription_id", BigId, nullable=False),
        sa.Column("customer_id", BigId, nullable=False),
        sa.Column("reason", _enum("suspension_reason", "debt", "promise_expired"), nullable=False),
        sa.Column("suspended_at", Time, nullable=False),
        sa.Column("resumed_at", Time, nullable=True),
        sa.CheckConstraint(
            "resumed_at IS NULL OR resumed_at >= suspended_at",
            name=op.f("ck_subscription_suspensions_times_ordered"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_subscription_suspensions_customer_id_customers"),
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_subscription_suspensions_subscription_id_subscriptions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription_suspensions")),
    )
    op.create_index(
        op.f("ix_subscription_suspensions_customer"),
        "subscription_suspensions",
        ["customer_id", "suspended_at"],
    )
    op.create_index(
        op.f("uq_subscription_suspensions_open"),
        "subscription_suspensions",
        ["subscription_id"],
        unique=True,
        postgresql_where=sa.text("resumed_at IS NULL"),
        sqlite_where=sa.text("resumed_at IS NULL"),
    )

    op.create_table(
        "promised_payments",
        sa.Column("id", BigId, nullable=False),
        sa.Column("customer_id", BigId, nullable=False),
        sa.Column("amount", Money, nullable=False),
        sa.Column("repaid", Money, nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column(
            "status",
            _enum("promised_payment_status", "active", "repaid", "expired"),
            nullable=False,
        ),
        sa.Column("created_by", BigId, nullable=False),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("expires_at", Time, nullable=False),
        sa.Column("closed_at", Time, nullable=True),
        sa.CheckConstraint("amount > 0", name=op.f("ck_promised_payments_amount_positive")),
        sa.CheckConstraint(
            "repaid >= 0 AND repaid <= amount",
            name=op.f("ck_promised_payments_repaid_within_amount"),
        ),
        sa.CheckConstraint(
            "expires_at > created_at", name=op.f("ck_promised_payments_expires_after_created")
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_promised_payments_created_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_promised_payments_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_promised_payments")),
    )
    op.create_index(
        op.f("ix_promised_payments_customer_created"),
        "promised_payments",
        ["customer_id", "created_at"],
    )
    op.create_index(
        op.f("ix_promised_payments_active_expires"),
        "promised_payments",
        ["expires_at", "id"],
        postgresql_where=sa.text("status = 'active'"),
        sqlite_where=sa.text("status = 'active'"),
    )


def downgrade() -> None:
    # Before 0017 a promised payment's ledger entries had no account and a suspended
    # subscription no status: undoing it would rewrite money history, so it refuses instead.
    bind = op.get_bind()
    kept = bind.scalar(
        sa.text(
            "SELECT (SELECT count(*) FROM transactions WHERE account = 'promised_credit')"
            " + (SELECT count(*) FROM subscriptions WHERE status = 'suspended')"
        )
    )
    if kept:
        raise RuntimeError(
            "cannot downgrade below 0017: promised payments' ledger entries or suspended "
            "subscriptions exist, and no earlier schema can hold them"
        )
    op.drop_table("promised_payments")
    op.drop_table("subscription_suspensions")
    op.drop_table("invoice_reminders")
    op.drop_index(op.f("ix_invoices_overdue_due"), table_name="invoices")
    with op.batch_alter_table("transactions") as batch:
        batch.drop_constraint(op.f("ck_transactions_ledger_account"), type_="check")
        batch.create_check_constraint(
            op.f("ck_transactions_ledger_account"), _in("account", _ACCOUNTS)
        )
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_constraint(op.f("ck_subscriptions_subscription_status"), type_="check")
        batch.create_check_constraint(
            op.f("ck_subscriptions_subscription_status"), _in("status", _STATUSES)
        )
