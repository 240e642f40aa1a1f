"""Invoice receivables: every issued invoice posted as issued in the ledger.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24

Issuing an invoice now debits its `receivable` and credits `revenue` (both entries name the
invoice, no payment), dated when it was issued; payments already credit that receivable
and refunds debit it, so with this posting it holds what is still due. The upgrade posts
the issuance of every issued, overdue or paid invoice that has none; a void one owes
nothing and gets none. No schema change: data only, so it runs the same on PostgreSQL and
SQLite (movement ids are made here, as neither database makes a UUID the other can).
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 5000

# Frozen copies of the columns used here: a migration does not import the app's models.
invoices = sa.table(
    "invoices",
    sa.column("id", sa.BigInteger()),
    sa.column("customer_id", sa.BigInteger()),
    sa.column("amount", sa.Numeric(12, 2)),
    sa.column("currency", sa.String(3)),
    sa.column("status", sa.String(16)),
    sa.column("issued_at", sa.DateTime(timezone=True)),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
transactions = sa.table(
    "transactions",
    sa.column("movement_id", sa.Uuid()),
    sa.column("customer_id", sa.BigInteger()),
    sa.column("invoice_id", sa.BigInteger()),
    sa.column("payment_id", sa.BigInteger()),
    sa.column("account", sa.String(32)),
    sa.column("type", sa.String(16)),
    sa.column("amount", sa.Numeric(12, 2)),
    sa.column("currency", sa.String(3)),
    sa.column("created_at", sa.DateTime(timezone=True)),
)

# An issuance is the movement with a revenue credit that names an invoice and no payment.
issuance_entries = sa.select(transactions.c.movement_id).where(
    transactions.c.account == "revenue",
    transactions.c.invoice_id.is_not(None),
    transactions.c.payment_id.is_(None),
)


def upgrade() -> None:
    connection = op.get_bind()
    posted = sa.exists().where(
        transactions.c.invoice_id == invoices.c.id,
        transactions.c.account == "revenue",
        transactions.c.payment_id.is_(None),
    )
    unposted = (
        sa.select(
            invoices.c.id,
            invoices.c.customer_id,
            invoices.c.amount,
            invoices.c.currency,
            sa.func.coalesce(invoices.c.issued_at, invoices.c.created_at).label("at"),
        )
        .where(invoices.c.status.in_(("issued", "overdue", "paid")), ~posted)
        .order_by(invoices.c.id)
        .limit(BATCH)
    )
    after = 0
    while rows := connection.execute(unposted.where(invoices.c.id > after)).all():
        entries = []
        for row in rows:
            movement_id = uuid.uuid4()
            for account, side in (("receivable", "debit"), ("revenue", "credit")):
                entries.append(
                    {
                        "movement_id": movement_id,
                        "customer_id": row.customer_id,
                        "invoice_id": row.id,
                        "payment_id": None,
                        "account": account,
                        "type": side,
                        "amount": row.amount,
                        "currency": row.currency,
                        "created_at": row.at,
                    }
                )
        connection.execute(sa.insert(transactions), entries)
        after = rows[-1].id


def downgrade() -> None:
    # The older code posts no issuance: remove every one, the backfilled and the later.
    op.get_bind().execute(
        sa.delete(transactions).where(transactions.c.movement_id.in_(issuance_entries))
    )
