"""Event consumers: processed-event ids, analytics counters, the subscribers' catch-up index.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24

`processed_events` holds each consumer's handled event ids, written in the transaction of
the handler's effect, so a redelivered event changes nothing. `analytics_payments_daily`
is the analytics consumer's counters. Subscribers that reconnect read one subject's
outbox events after a point: `ix_outbox_subject_occurred`.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "processed_events",
        sa.Column("consumer", sa.String(length=100), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id", name=op.f("pk_processed_events")),
    )
    op.create_table(
        "analytics_payments_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("payments", sa.Integer(), nullable=False),
        sa.Column("amount", sa.Numeric(16, 2), nullable=False),
        sa.Column("refunds", sa.Integer(), nullable=False),
        sa.Column("refunded", sa.Numeric(16, 2), nullable=False),
        sa.CheckConstraint(
            "payments >= 0", name=op.f("ck_analytics_payments_daily_payments_non_negative")
        ),
        sa.CheckConstraint(
            "refunds >= 0", name=op.f("ck_analytics_payments_daily_refunds_non_negative")
        ),
        sa.PrimaryKeyConstraint(
            "day", "method", "currency", name=op.f("pk_analytics_payments_daily")
        ),
    )
    op.create_index(
        "ix_outbox_subject_occurred", "outbox", ["subject", "occurred_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_subject_occurred", table_name="outbox")
    op.drop_table("analytics_payments_daily")
    op.drop_table("processed_events")
