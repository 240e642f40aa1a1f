"""the audit log of staff mutations, append-only; staff actions on the CRM timeline.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04

`audit_log` holds one row per staff mutation (domains/audit/log.py). Triggers refuse every
UPDATE and DELETE of it (and TRUNCATE on PostgreSQL), on both databases, so not even a bug
or a hand-typed statement rewrites history. The CRM
timeline gains the kind `staff_action`, which the consumer writes from `audit.recorded`.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

OLD_KINDS = (
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
KINDS = (*OLD_KINDS, "staff_action")

_APPEND_ONLY = """
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$
"""


# SQLite's own: the same refusal, in its trigger language.
_SQLITE_APPEND_ONLY = tuple(
    f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log"
    f" BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: {verb} refused'); END"
    for verb in ("UPDATE", "DELETE")
)


def _kinds(kinds: Sequence[str]) -> str:
    return "kind IN (" + ", ".join(f"'{kind}'" for kind in kinds) + ")"


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", BigId, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_id", BigId, nullable=False),
        sa.Column("actor_role", sa.String(length=16), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=True),
        sa.Column("client_address", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=256), nullable=True),
        sa.Column("operation", sa.String(length=128), nullable=False),
        sa.Column("arguments", sa.JSON(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("customer_id", BigId, nullable=True),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["users.id"], name=op.f("fk_audit_log_actor_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_recorded", "audit_log", ["recorded_at", "id"])
    op.create_index("ix_audit_log_actor", "audit_log", ["actor_id", "recorded_at", "id"])
    op.create_index("ix_audit_log_customer", "audit_log", ["customer_id", "recorded_at", "id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_APPEND_ONLY)
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log"
            " FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log"
            " FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
        )
    else:
        for trigger in _SQLITE_APPEND_ONLY:
            op.execute(trigger)
    with op.batch_alter_table("crm_timeline") as batch:
        batch.drop_constraint(op.f("ck_crm_timeline_timeline_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_crm_timeline_timeline_kind"), _kinds(KINDS))


def downgrade() -> None:
    op.execute("DELETE FROM crm_timeline WHERE kind = 'staff_action'")
    with op.batch_alter_table("crm_timeline") as batch:
        batch.drop_constraint(op.f("ck_crm_timeline_timeline_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_crm_timeline_timeline_kind"), _kinds(OLD_KINDS))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION audit_log_append_only()")
    else:
        op.execute("DROP TRIGGER audit_log_no_delete")
        op.execute("DROP TRIGGER audit_log_no_update")
    op.drop_index("ix_audit_log_customer", table_name="audit_log")
    op.drop_index("ix_audit_log_actor", table_name="audit_log")
    op.drop_index("ix_audit_log_recorded", table_name="audit_log")
    op.drop_table("audit_log")
