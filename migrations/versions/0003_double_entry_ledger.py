"""Double-entry ledger, refunds and idempotency keys.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

`transactions` becomes the ledger: every row belongs to a movement (`movement_id`) whose
entries balance, names its customer, and, for receivable entries, its invoice;
`payment_id` turns optional (top-ups and invoice issuing have none). Existing entries are
backfilled: one movement per payment, customer and invoice from the payment. SQLite alters
columns by copying the table (batch mode).
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.add_column(
            sa.Column(
                "refunded_amount",
                sa.Numeric(precision=12, scale=2),
                nullable=False,
                server_default="0",
            )
        )
        batch.create_check_constraint(
            op.f("ck_payments_refunded_within_amount"),
            "refunded_amount >= 0 AND refunded_amount <= amount",
        )
    with op.batch_alter_table("payments") as batch:
        batch.alter_column("refunded_amount", server_default=None)

    with op.batch_alter_table("transactions") as batch:
        batch.add_column(sa.Column("movement_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("customer_id", BigId, nullable=True))
        batch.add_column(sa.Column("invoice_id", BigId, nullable=True))
    _backfill_entries()
    with op.batch_alter_table("transactions") as batch:
        batch.alter_column("movement_id", existing_type=sa.Uuid(), nullable=False)
        batch.alter_column("customer_id", existing_type=BigId, nullable=False)
        batch.alter_column("payment_id", existing_type=BigId, nullable=True)
        batch.create_foreign_key(
            "fk_transactions_customer_id_customers", "customers", ["customer_id"], ["id"]
        )
        batch.create_foreign_key(
            "fk_transactions_invoice_id_invoices", "invoices", ["invoice_id"], ["id"]
        )
        batch.create_check_constraint(
            op.f("ck_transactions_receivable_has_invoice"),
            "account <> 'receivable' OR invoice_id IS NOT NULL",
        )
        batch.create_index("ix_transactions_movement_id", ["movement_id"], unique=False)
        batch.create_index("ix_transactions_invoice_id", ["invoice_id"], unique=False)
        batch.create_index(
            "ix_transactions_customer_account", ["customer_id", "account", "id"], unique=False
        )

    op.create_table(
        "refunds",
        sa.Column("id", BigId, nullable=False),
        sa.Column("payment_id", BigId, nullable=False),
        sa.Column("amount", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("created_by", BigId, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_refunds_amount_positive")),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_refunds_payment_id_payments")
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_refunds_created_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refunds")),
    )
    op.create_index(op.f("ix_refunds_payment_id"), "refunds", ["payment_id"], unique=False)

    op.create_table(
        "idempotency_keys",
        sa.Column("id", BigId, nullable=False),
        sa.Column("customer_id", BigId, nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("payment_id", BigId, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "expires_at > created_at", name=op.f("ck_idempotency_keys_expires_after_created")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_idempotency_keys_customer_id_customers"),
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_idempotency_keys_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_keys")),
        sa.UniqueConstraint("customer_id", "key", name=op.f("uq_idempotency_keys_customer_key")),
    )
    op.create_index(
        op.f("ix_idempotency_keys_expires_at"), "idempotency_keys", ["expires_at"], unique=False
    )


def _backfill_entries() -> None:
    """One movement per payment; the customer, and the invoice of receivable entries."""
    bind = op.get_bind()
    entries = sa.table(
        "transactions",
        sa.column("id", BigId),
        sa.column("payment_id", BigId),
        sa.column("account", sa.String()),
        sa.column("movement_id", sa.Uuid()),
        sa.column("customer_id", BigId),
        sa.column("invoice_id", BigId),
    )
    payments = sa.table(
        "payments", sa.column("id", BigId), sa.column("customer_id", BigId), sa.column("invoice_id")
    )
    rows = bind.execute(
        sa.select(entries.c.id, entries.c.account, payments.c.id, payments.c.customer_id)
        .add_columns(payments.c.invoice_id)
        .join(payments, payments.c.id == entries.c.payment_id)
    ).all()
    for entry_id, account, payment_id, customer_id, invoice_id in rows:
        bind.execute(
            entries.update()
            .where(entries.c.id == entry_id)
            .values(
                movement_id=uuid.uuid5(uuid.NAMESPACE_OID, f"payment:{payment_id}"),
                customer_id=customer_id,
                invoice_id=invoice_id if account == "receivable" else None,
            )
        )


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_table("refunds")
    op.execute("DELETE FROM transactions WHERE payment_id IS NULL")
    with op.batch_alter_table("transactions") as batch:
        batch.drop_index("ix_transactions_customer_account")
        batch.drop_index("ix_transactions_invoice_id")
        batch.drop_index("ix_transactions_movement_id")
        batch.drop_constraint(op.f("ck_transactions_receivable_has_invoice"), type_="check")
        batch.drop_constraint("fk_transactions_invoice_id_invoices", type_="foreignkey")
        batch.drop_constraint("fk_transactions_customer_id_customers", type_="foreignkey")
        batch.alter_column("payment_id", existing_type=BigId, nullable=False)
        batch.drop_column("invoice_id")
        batch.drop_column("customer_id")
        batch.drop_column("movement_id")
    with op.batch_alter_table("payments") as batch:
        batch.drop_constraint(op.f("ck_payments_refunded_within_amount"), type_="check")
        batch.drop_column("refunded_amount")
