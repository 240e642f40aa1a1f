"""staff provisioning: structured service addresses, voided invoices.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04

A contract's service address gains its parts (region, city, street, house, flat, postal
code), which staff search; `address` stays as the display form, written from the parts by
createContract and updateContract (domains/customers/contract_admin.py). Contracts from
before keep their free-text `address` and no parts until staff edit them: a free text
cannot be split into parts reliably. An invoice voided by an admin records when, by whom
and why (its status says `void`; the ledger holds the reversal).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.DateTime(timezone=True)
PARTS = (
    ("region", 100),
    ("city", 100),
    ("street", 150),
    ("house", 20),
    ("flat", 20),
    ("postal_code", 12),
)


def upgrade() -> None:
    with op.batch_alter_table("contracts") as batch:
        for name, length in PARTS:
            batch.add_column(sa.Column(name, sa.String(length), nullable=True))
    op.create_index(op.f("ix_contracts_postal_code"), "contracts", ["postal_code"])
    op.create_index(op.f("ix_contracts_city_street"), "contracts", ["city", "street", "house"])
    with op.batch_alter_table("invoices") as batch:
        batch.add_column(sa.Column("voided_at", Time, nullable=True))
        batch.add_column(sa.Column("voided_by", BigId, nullable=True))
        batch.add_column(sa.Column("void_reason", sa.String(500), nullable=True))
        batch.create_foreign_key(
            op.f("fk_invoices_voided_by_users"), "users", ["voided_by"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("invoices") as batch:
        batch.drop_constraint(op.f("fk_invoices_voided_by_users"), type_="foreignkey")
        batch.drop_column("void_reason")
        batch.drop_column("voided_by")
        batch.drop_column("voided_at")
    op.drop_index(op.f("ix_contracts_city_street"), table_name="contracts")
    op.drop_index(op.f("ix_contracts_postal_code"), table_name="contracts")
    with op.batch_alter_table("contracts") as batch:
        for name, _ in reversed(PARTS):
            batch.drop_column(name)
