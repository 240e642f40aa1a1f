"""Refund idempotency: a key can name the refund its first request made.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

An admin retrying `refundPayment` after a timeout must not refund twice, so refunds claim
idempotency keys as payments do (per customer, kept a day): `idempotency_keys.refund_id`
is the refund a retry is answered with, `payment_id` stays the payment a payment request
made. A key names one of the two. SQLite adds the foreign key by copying the table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.add_column(sa.Column("refund_id", BigId, nullable=True))
        batch.create_foreign_key(
            "fk_idempotency_keys_refund_id_refunds", "refunds", ["refund_id"], ["id"]
        )


def downgrade() -> None:
    # Refund keys answer nothing once the column is gone: drop them with it.
    op.execute("DELETE FROM idempotency_keys WHERE refund_id IS NOT NULL")
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_constraint("fk_idempotency_keys_refund_id_refunds", type_="foreignkey")
        batch.drop_column("refund_id")
