"""Card payments and top-ups through a payment provider.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24

`payments.invoice_id` turns optional (a top-up of the balance pays no invoice); a payment
made through a provider keeps the provider's name, payment id and confirmation URL; and
`provider_events` records each webhook event handled, so a redelivery changes nothing.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.alter_column("invoice_id", existing_type=BigId, nullable=True)
        batch.add_column(sa.Column("provider", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("provider_payment_id", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("confirmation_url", sa.String(length=2048), nullable=True))
        batch.create_unique_constraint(
            op.f("uq_payments_provider_payment"), ["provider", "provider_payment_id"]
        )

    op.create_table(
        "provider_events",
        sa.Column("id", BigId, nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("payment_id", BigId, nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_provider_events_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_events")),
        sa.UniqueConstraint("provider", "event_id", name=op.f("uq_provider_events_provider_event")),
    )
    op.create_index(
        op.f("ix_provider_events_payment_id"), "provider_events", ["payment_id"], unique=False
    )


def downgrade() -> None:
    op.drop_table("provider_events")
    # Top-ups pay no invoice; the older schema cannot hold them.
    op.execute(
        "DELETE FROM idempotency_keys WHERE payment_id IN "
        "(SELECT id FROM payments WHERE invoice_id IS NULL)"
    )
    op.execute(
        "DELETE FROM transactions WHERE payment_id IN "
        "(SELECT id FROM payments WHERE invoice_id IS NULL)"
    )
    op.execute("DELETE FROM payments WHERE invoice_id IS NULL")
    with op.batch_alter_table("payments") as batch:
        batch.drop_constraint(op.f("uq_payments_provider_payment"), type_="unique")
        batch.drop_column("confirmation_url")
        batch.drop_column("provider_payment_id")
        batch.drop_column("provider")
        batch.alter_column("invoice_id", existing_type=BigId, nullable=False)
