"""support: tickets and their messages, operators, assignments, priority rules, SLA policies.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04

The default priority rules and SLA policies are seeded here, as data admins then edit
(domains/support/priority.py says how the rules are evaluated): each category's base
priority, then one step up for suspended service, for a reported loss of connection, for a
business customer and for a repeat ticket within 7 days.
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_BASE = (
    ("no_connection", "normal"),
    ("slow_speed", "normal"),
    ("billing", "normal"),
    ("equipment", "normal"),
    ("moving", "low"),
    ("other", "low"),
)
_RAISES = (
    ("service_suspended", None, "Service suspended: one step up"),
    ("no_connection", None, "Reports no connection: one step up"),
    ("business_segment", None, "Business customer: one step up"),
    ("repeat_ticket", 7, "Another ticket within 7 days: one step up"),
)
# priority: (first response, resolution) in minutes
_SLA = {"urgent": (15, 240), "high": (60, 480), "normal": (240, 1440), "low": (480, 4320)}


def _seed(rules: sa.Table, policies: sa.Table) -> None:
    now = datetime.now(UTC)
    base = [
        {
            "position": (index + 1) * 10,
            "description": f"Base priority of {category.replace('_', ' ')}: {priority}",
            "condition": "category",
            "category": category,
            "within_days": None,
            "set_priority": priority,
            "raise_steps": 0,
            "enabled": True,
            "updated_at": now,
        }
        for index, (category, priority) in enumerate(_BASE)
    ]
    raises = [
        {
            "position": 100 + index * 10,
            "description": description,
            "condition": condition,
            "category": None,
            "within_days": within_days,
            "set_priority": None,
            "raise_steps": 1,
            "enabled": True,
            "updated_at": now,
        }
        for index, (condition, within_days, description) in enumerate(_RAISES)
    ]
    op.bulk_insert(rules, base + raises)
    op.bulk_insert(
        policies,
        [
            {
                "priority": priority,
                "first_response_minutes": first,
                "resolution_minutes": resolution,
                "updated_at": now,
            }
            for priority, (first, resolution) in _SLA.items()
        ],
    )


def upgrade() -> None:
    op.create_table(
        "support_operators",
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "presence",
            sa.Enum(
                "online",
                "away",
                "offline",
                name="operator_presence",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("open_tickets", sa.Integer(), nullable=False),
        sa.Column("last_assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("presence_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "capacity BETWEEN 1 AND 1000", name=op.f("ck_support_operators_capacity_range")
        ),
        sa.CheckConstraint(
            "open_tickets >= 0", name=op.f("ck_support_operators_open_tickets_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_support_operators_user_id_users")
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_support_operators")),
    )
    rules = op.create_table(
        "ticket_priority_rules",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column(
            "condition",
            sa.Enum(
                "category",
                "service_suspended",
                "no_connection",
                "business_segment",
                "repeat_ticket",
                name="rule_condition",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column(
            "category",
            sa.Enum(
                "no_connection",
                "slow_speed",
                "billing",
                "equipment",
                "moving",
                "other",
                name="ticket_category",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=True,
        ),
        sa.Column("within_days", sa.Integer(), nullable=True),
        sa.Column(
            "set_priority",
            sa.Enum(
                "low",
                "normal",
                "high",
                "urgent",
                name="ticket_priority",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=True,
        ),
        sa.Column("raise_steps", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "updated_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.CheckConstraint(
            "(set_priority IS NOT NULL) <> (raise_steps > 0)",
            name=op.f("ck_ticket_priority_rules_one_action"),
        ),
        sa.CheckConstraint(
            "raise_steps BETWEEN 0 AND 3", name=op.f("ck_ticket_priority_rules_raise_steps_range")
        ),
        sa.CheckConstraint(
            "within_days IS NULL OR within_days > 0",
            name=op.f("ck_ticket_priority_rules_within_days_positive"),
        ),
        sa.ForeignKeyConstraint(
            ["updated_by"], ["users.id"], name=op.f("fk_ticket_priority_rules_updated_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_priority_rules")),
        sa.UniqueConstraint("position", name=op.f("uq_ticket_priority_rules_position")),
    )
    policies = op.create_table(
        "ticket_sla_policies",
        sa.Column(
            "priority",
            sa.Enum(
                "low",
                "normal",
                "high",
                "urgent",
                name="ticket_priority",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("first_response_minutes", sa.Integer(), nullable=False),
        sa.Column("resolution_minutes", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "updated_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.CheckConstraint(
            "first_response_minutes > 0",
            name=op.f("ck_ticket_sla_policies_first_response_positive"),
        ),
        sa.CheckConstraint(
            "resolution_minutes > 0", name=op.f("ck_ticket_sla_policies_resolution_positive")
        ),
        sa.ForeignKeyConstraint(
            ["updated_by"], ["users.id"], name=op.f("fk_ticket_sla_policies_updated_by_users")
        ),
        sa.PrimaryKeyConstraint("priority", name=op.f("pk_ticket_sla_policies")),
    )
    _seed(rules, policies)
    op.create_table(
        "support_operator_skills",
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "category",
            sa.Enum(
                "no_connection",
                "slow_speed",
                "billing",
                "equipment",
                "moving",
                "other",
                name="ticket_category",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["support_operators.user_id"],
            name=op.f("fk_support_operator_skills_user_id_support_operators"),
        ),
        sa.PrimaryKeyConstraint("user_id", "category", name=op.f("pk_support_operator_skills")),
    )
    op.create_table(
        "tickets",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "contract_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "category",
            sa.Enum(
                "no_connection",
                "slow_speed",
                "billing",
                "equipment",
                "moving",
                "other",
                name="ticket_category",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column(
            "priority",
            sa.Enum(
                "low",
                "normal",
                "high",
                "urgent",
                name="ticket_priority",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column(
            "priority_rule_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "status",
            sa.Enum(
                "new",
                "open",
                "pending_customer",
                "resolved",
                "closed",
                name="ticket_status",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column(
            "channel",
            sa.Enum(
                "web",
                "mobile",
                "staff",
                name="ticket_channel",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column(
            "assignee_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "created_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_response_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_response_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sla_paused_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_response_breached_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution_breached_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["assignee_id"], ["users.id"], name=op.f("fk_tickets_assignee_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["contract_id"], ["contracts.id"], name=op.f("fk_tickets_contract_id_contracts")
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_tickets_created_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_tickets_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["priority_rule_id"],
            ["ticket_priority_rules.id"],
            name=op.f("fk_tickets_priority_rule_id_ticket_priority_rules"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tickets")),
    )
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.create_index(
            "ix_tickets_assignee_id_status", ["assignee_id", "status"], unique=False
        )
        batch_op.create_index(
            "ix_tickets_customer_id_created_at", ["customer_id", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_tickets_queue",
            ["created_at"],
            unique=False,
            postgresql_where=sa.text("assignee_id IS NULL AND status IN ('new', 'open')"),
            sqlite_where=sa.text("assignee_id IS NULL AND status IN ('new', 'open')"),
        )

    op.create_table(
        "ticket_assignments",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "ticket_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "operator_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "assigned_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "reason",
            sa.Enum(
                "auto",
                "queue",
                "manual",
                "escalation",
                name="assignment_reason",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["assigned_by"], ["users.id"], name=op.f("fk_ticket_assignments_assigned_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["operator_id"], ["users.id"], name=op.f("fk_ticket_assignments_operator_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_ticket_assignments_ticket_id_tickets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_assignments")),
    )
    with op.batch_alter_table("ticket_assignments", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ticket_assignments_ticket_id_id", ["ticket_id", "id"], unique=False
        )

    op.create_table(
        "ticket_messages",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "ticket_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "author_kind",
            sa.Enum(
                "customer",
                "operator",
                "system",
                name="author_kind",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("author_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("internal", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "NOT internal OR author_kind = 'operator'",
            name=op.f("ck_ticket_messages_internal_by_operator"),
        ),
        sa.ForeignKeyConstraint(
            ["author_id"], ["users.id"], name=op.f("fk_ticket_messages_author_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_ticket_messages_ticket_id_tickets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_messages")),
    )
    with op.batch_alter_table("ticket_messages", schema=None) as batch_op:
        batch_op.create_index("ix_ticket_messages_ticket_id_id", ["ticket_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ticket_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_ticket_messages_ticket_id_id")

    op.drop_table("ticket_messages")
    with op.batch_alter_table("ticket_assignments", schema=None) as batch_op:
        batch_op.drop_index("ix_ticket_assignments_ticket_id_id")

    op.drop_table("ticket_assignments")
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_tickets_queue",
            postgresql_where=sa.text("assignee_id IS NULL AND status IN ('new', 'open')"),
            sqlite_where=sa.text("assignee_id IS NULL AND status IN ('new', 'open')"),
        )
        batch_op.drop_index("ix_tickets_customer_id_created_at")
        batch_op.drop_index("ix_tickets_assignee_id_status")

    op.drop_table("tickets")
    op.drop_table("support_operator_skills")
    op.drop_table("ticket_sla_policies")
    op.drop_table("ticket_priority_rules")
    op.drop_table("support_operators")
