"""analytics_invoices_daily: invoices issued and amount billed per UTC day and currency.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04

The analytics consumer adds each `invoice.issued` event to its day's row
(domains/analytics/invoices.py), once per event (`processed_events`); staff read it as
`invoiceStatistics`. Days before this migration stay empty: the events that would fill them
were published before the consumer handled them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "analytics_invoices_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("invoices", sa.Integer(), nullable=False),
        sa.Column("billed", sa.Numeric(16, 2), nullable=False),
        sa.CheckConstraint(
            "invoices >= 0", name=op.f("ck_analytics_invoices_daily_invoices_non_negative")
        ),
        sa.PrimaryKeyConstraint("day", "currency", name=op.f("pk_analytics_invoices_daily")),
    )


def downgrade() -> None:
    op.drop_table("analytics_invoices_daily")
