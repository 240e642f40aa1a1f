"""outbox: an index of the unpublished rows in the relay's order.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04

The relay reads `published_at IS NULL ORDER BY occurred_at, id LIMIT n`. With a backlog
(an invoice run writes one event per invoice: 700,000 at once) `ix_outbox_pending` leaves
the tie on `id` to a sort, and the planner scans the table whole and sorts it for every
batch, 200 ms per 500 rows at 70,000 waiting. A partial index in exactly that order holds
only what is waiting, so each batch reads its rows in order and stops.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNPUBLISHED = sa.text("published_at IS NULL")


def upgrade() -> None:
    op.create_index(
        "ix_outbox_unpublished",
        "outbox",
        ["occurred_at", "id"],
        unique=False,
        postgresql_where=UNPUBLISHED,
        sqlite_where=UNPUBLISHED,
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_unpublished", table_name="outbox")
