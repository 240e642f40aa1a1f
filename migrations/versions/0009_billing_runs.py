"""billing_runs: each monthly invoice run, its period, state and what it billed.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

A run's counts grow in each batch's transaction (domains/billing/invoice_run.py), so the
record says what committed even when the run was killed; staff read it as `billingRuns`.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Money = sa.Numeric(precision=12, scale=2)


def upgrade() -> None:
    op.create_table(
        "billing_runs",
        sa.Column("id", BigId, nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("invoices", sa.Integer(), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("amount", Money, nullable=False),
        sa.Column("autopaid", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "invoices >= 0 AND lines >= 0 AND amount >= 0 AND autopaid >= 0",
            name=op.f("ck_billing_runs_counts_not_negative"),
        ),
        sa.CheckConstraint(
            "state IN ('running', 'finished', 'failed')",
            name=op.f("ck_billing_runs_billing_run_state"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_runs")),
    )
    op.create_index(
        "ix_billing_runs_period_state", "billing_runs", ["period_start", "state"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_billing_runs_period_state", table_name="billing_runs")
    op.drop_table("billing_runs")
