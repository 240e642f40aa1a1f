"""ix_invoices_issued_due: the issued invoices by due date, for overdue marking.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04

The worker marks issued invoices past their due date overdue in (due date, id) batches
(domains/billing/invoice_overdue.py); a partial index holds only the issued ones, so a
batch reads what it marks, however many paid invoices the table holds.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_invoices_issued_due",
        "invoices",
        ["due_date", "id"],
        unique=False,
        postgresql_where=sa.text("status = 'issued'"),
        sqlite_where=sa.text("status = 'issued'"),
    )


def downgrade() -> None:
    op.drop_index("ix_invoices_issued_due", table_name="invoices")
