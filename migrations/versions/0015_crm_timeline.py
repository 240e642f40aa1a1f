"""crm_timeline: a customer's timeline for staff, kept by the CRM consumer.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04

The `crm` consumer (domains/crm/consumer.py) writes one row per billing or support event
about a customer, once per event (`processed_events`, and `event_id` unique besides); staff
read it as `Customer.timeline`, newest first. The group's first start reads the topics from
the earliest offset the broker keeps, so events older than Kafka's retention never get
an entry.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

KINDS = (
    "payment",
    "refund",
    "invoice_issued",
    "invoice_paid",
    "invoice_overdue",
    "ticket_created",
    "ticket_status_changed",
    "ticket_assigned",
    "ticket_priority_changed",
)


def upgrade() -> None:
    op.create_table(
        "crm_timeline",
        sa.Column("id", BigId, nullable=False),
        sa.Column("customer_id", BigId, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=23), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("actor_id", BigId, nullable=True),
        sa.CheckConstraint(
            "kind IN (" + ", ".join(f"'{kind}'" for kind in KINDS) + ")",
            name=op.f("ck_crm_timeline_timeline_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_crm_timeline_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["users.id"], name=op.f("fk_crm_timeline_actor_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_timeline")),
        sa.UniqueConstraint("event_id", name=op.f("uq_crm_timeline_event_id")),
    )
    op.create_index(
        "ix_crm_timeline_customer_occurred",
        "crm_timeline",
        ["customer_id", "occurred_at", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_crm_timeline_customer_occurred", table_name="crm_timeline")
    op.drop_table("crm_timeline")
