"""Invoice lines; the monthly run's uniqueness: (customer, period), (line: subscription, period).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

Until now an invoice billed one subscription for one period, unique on (subscription,
period). The monthly run bills a customer account once per period, one `invoice_lines` row
per subscription billed (tariff, days billed, unit price, amount, description), so:

- `invoice_lines` is created, unique on (subscription, period): a subscription is billed
  once per period, whichever invoice bills it.
- `invoices.kind`: `monthly` for the run's invoices, `single` for every other, existing
  ones included. A partial unique index keeps one `monthly` invoice per (customer,
  period); `single` ones are not limited. The old (subscription, period) constraint goes:
  the lines hold it now.
- Each existing invoice that names a subscription gets one line: that subscription, its
  tariff (the subscription's; invoices kept no other record of it), the invoice's period,
  every day of it, its amount as both unit price and amount. An invoice with no
  subscription (none is made so, but by tests) gets no line; reconcile checks an invoice
  against its lines only where it has some.

The rule for history: existing invoices are never merged. A customer with two
subscriptions has two invoices for each past period, each issued, paid or refunded on its
own, with payments, refunds and ledger postings that name it; merging them would rewrite
money already booked. So they stay `single`, outside the (customer, period) uniqueness,
each with its line, and reconcile stays as it was. The run, billing a period again, finds
their subscriptions already billed (their lines) and bills only what is not.

Downgrade: the older schema has no place for lines, so they go; every invoice stays, with
its amount and money history (a monthly invoice then names no subscription). It restores
(subscription, period), which holds: lines kept each subscription billed once per period,
and a monthly invoice names none.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Money = sa.Numeric(precision=12, scale=2)
BATCH = 5000
MONTHLY = sa.text("kind = 'monthly'")

# Frozen copies of the columns used here: a migration does not import the app's models.
invoices = sa.table(
    "invoices",
    sa.column("id", sa.BigInteger()),
    sa.column("subscription_id", sa.BigInteger()),
    sa.column("period_start", sa.Date()),
    sa.column("period_end", sa.Date()),
    sa.column("amount", Money),
    sa.column("currency", sa.String(3)),
)
subscriptions = sa.table(
    "subscriptions", sa.column("id", sa.BigInteger()), sa.column("tariff_id", sa.BigInteger())
)
tariffs = sa.table("tariffs", sa.column("id", sa.BigInteger()), sa.column("name", sa.String(120)))
lines = sa.table(
    "invoice_lines",
    sa.column("invoice_id", sa.BigInteger()),
    sa.column("subscription_id", sa.BigInteger()),
    sa.column("tariff_id", sa.BigInteger()),
    sa.column("period_start", sa.Date()),
    sa.column("period_end", sa.Date()),
    sa.column("first_day", sa.Date()),
    sa.column("last_day", sa.Date()),
    sa.column("days", sa.Integer()),
    sa.column("unit_price", Money),
    sa.column("amount", Money),
    sa.column("currency", sa.String(3)),
    sa.column("description", sa.String(300)),
)


def upgrade() -> None:
    op.create_table(
        "invoice_lines",
        sa.Column("id", BigId, nullable=False),
        sa.Column("invoice_id", BigId, nullable=False),
        sa.Column("subscription_id", BigId, nullable=False),
        sa.Column("tariff_id", BigId, nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("first_day", sa.Date(), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=False),
        sa.Column("days", sa.Integer(), nullable=False),
        sa.Column("unit_price", Money, nullable=False),
        sa.Column("amount", Money, nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("description", sa.String(length=300), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_invoice_lines_amount_positive")),
        sa.CheckConstraint("unit_price > 0", name=op.f("ck_invoice_lines_unit_price_positive")),
        sa.CheckConstraint("days > 0", name=op.f("ck_invoice_lines_days_positive")),
        sa.CheckConstraint(
            "period_start <= first_day AND first_day <= last_day AND last_day <= period_end",
            name=op.f("ck_invoice_lines_days_within_period"),
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_invoice_lines_invoice_id_invoices")
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_invoice_lines_subscription_id_subscriptions"),
        ),
        sa.ForeignKeyConstraint(
            ["tariff_id"], ["tariffs.id"], name=op.f("fk_invoice_lines_tariff_id_tariffs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_lines")),
        sa.UniqueConstraint(
            "subscription_id", "period_start", name=op.f("uq_invoice_lines_subscription_period")
        ),
    )
    op.create_index(
        op.f("ix_invoice_lines_invoice_id"), "invoice_lines", ["invoice_id"], unique=False
    )
    op.create_index(
        op.f("ix_invoice_lines_tariff_id"), "invoice_lines", ["tariff_id"], unique=False
    )
    _line_per_invoice()

    with op.batch_alter_table("invoices") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(length=16), server_default="single", nullable=False)
        )
        batch.create_check_constraint(
            op.f("ck_invoices_invoice_kind"), "kind IN ('monthly', 'single')"
        )
        batch.drop_constraint(op.f("uq_invoices_subscription_period"), type_="unique")
    op.create_index(
        op.f("uq_invoices_customer_period"),
        "invoices",
        ["customer_id", "period_start"],
        unique=True,
        postgresql_where=MONTHLY,
        sqlite_where=MONTHLY,
    )


def _line_per_invoice() -> None:
    """One line for each invoice of one subscription, a batch of invoices at a time."""
    connection = op.get_bind()
    billed = (
        sa.select(
            invoices.c.id,
            invoices.c.subscription_id,
            subscriptions.c.tariff_id,
            tariffs.c.name,
            invoices.c.period_start,
            invoices.c.period_end,
            invoices.c.amount,
            invoices.c.currency,
        )
        .join(subscriptions, subscriptions.c.id == invoices.c.subscription_id)
        .join(tariffs, tariffs.c.id == subscriptions.c.tariff_id)
        .order_by(invoices.c.id)
        .limit(BATCH)
    )
    after = 0
    while rows := connection.execute(billed.where(invoices.c.id > after)).all():
        connection.execute(sa.insert(lines), [_line(row) for row in rows])
        after = rows[-1].id


def _line(row: sa.Row) -> dict:
    days = (row.period_end - row.period_start).days + 1
    return {
        "invoice_id": row.id,
        "subscription_id": row.subscription_id,
        "tariff_id": row.tariff_id,
        "period_start": row.period_start,
        "period_end": row.period_end,
        "first_day": row.period_start,
        "last_day": row.period_end,
        "days": days,
        "unit_price": row.amount,
        "amount": row.amount,
        "currency": row.currency,
        # As domains/billing/proration.py's Charge.describe words a whole period.
        "description": (
            f"{row.name}: {row.period_start.isoformat()} to {row.period_end.isoformat()},"
            f" {days} of {days} days"
        ),
    }


def downgrade() -> None:
    op.drop_index(op.f("uq_invoices_customer_period"), table_name="invoices")
    with op.batch_alter_table("invoices") as batch:
        batch.create_unique_constraint(
            op.f("uq_invoices_subscription_period"), ["subscription_id", "period_start"]
        )
        batch.drop_constraint(op.f("ck_invoices_invoice_kind"), type_="check")
        batch.drop_column("kind")
    op.drop_index(op.f("ix_invoice_lines_tariff_id"), table_name="invoice_lines")
    op.drop_index(op.f("ix_invoice_lines_invoice_id"), table_name="invoice_lines")
    op.drop_table("invoice_lines")
