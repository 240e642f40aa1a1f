"""tariff changes, dated prices and pauses.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04

`subscription_tariffs` dates which tariff a subscription had from which day (a scheduled
downgrade is a row still ahead), `tariff_prices` a tariff's price from which day, and
`subscription_pauses` the customer's voluntary pauses: the monthly run bills each day at
the tariff and price in force on it, and leaves paused days unbilled. A line is now unique
per subscription, period and first day billed (one line per tariff or price span) rather
than per subscription and period; the run still bills a subscription once per period: it
reads only subscriptions with no line for the period.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Money = sa.Numeric(precision=12, scale=2)
Time = sa.DateTime(timezone=True)


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}")
    )


def upgrade() -> None:
    op.create_table(
        "tariff_prices",
        sa.Column("id", BigId, nullable=False),
        sa.Column("tariff_id", BigId, nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("monthly_price", Money, nullable=False),
        sa.Column("created_at", Time, nullable=False),
        sa.CheckConstraint(
            "monthly_price > 0", name=op.f("ck_tariff_prices_monthly_price_positive")
        ),
        _fk("tariff_prices", "tariff_id", "tariffs"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tariff_prices")),
        sa.UniqueConstraint(
            "tariff_id", "effective_from", name=op.f("uq_tariff_prices_tariff_day")
        ),
    )
    op.create_table(
        "subscription_tariffs",
        sa.Column("id", BigId, nullable=False),
        sa.Column("subscription_id", BigId, nullable=False),
        sa.Column("customer_id", BigId, nullable=False),
        sa.Column("tariff_id", BigId, nullable=False),
        sa.Column("first_day", sa.Date(), nullable=False),
        sa.Column("created_at", Time, nullable=False),
        _fk("subscription_tariffs", "subscription_id", "subscriptions"),
        _fk("subscription_tariffs", "customer_id", "customers"),
        _fk("subscription_tariffs", "tariff_id", "tariffs"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription_tariffs")),
        sa.UniqueConstraint(
            "subscription_id", "first_day", name=op.f("uq_subscription_tariffs_day")
        ),
    )
    op.create_index(
        op.f("ix_subscription_tariffs_customer"),
        "subscription_tariffs",
        ["customer_id", "first_day"],
    )
    op.create_table(
        "subscription_pauses",
        sa.Column("id", BigId, nullable=False),
        sa.Column("subscription_id", BigId, nullable=False),
        sa.Column("customer_id", BigId, nullable=False),
        sa.Column("first_day", sa.Date(), nullable=False),
        sa.Column("until", sa.Date(), nullable=False),
        sa.Column("resumed_on", sa.Date(), nullable=True),
        sa.Column("created_by", BigId, nullable=False),
        sa.Column("created_at", Time, nullable=False),
        sa.CheckConstraint("until > first_day", name=op.f("ck_subscription_pauses_days_ordered")),
        sa.CheckConstraint(
            "resumed_on IS NULL OR (resumed_on >= first_day AND resumed_on <= until)",
            name=op.f("ck_subscription_pauses_resumed_within"),
        ),
        _fk("subscription_pauses", "subscription_id", "subscriptions"),
        _fk("subscription_pauses", "customer_id", "customers"),
        _fk("subscription_pauses", "created_by", "users"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription_pauses")),
    )
    op.create_index(
        op.f("ix_subscription_pauses_customer"),
        "subscription_pauses",
        ["customer_id", "first_day"],
    )
    op.create_index(
        op.f("ix_subscription_pauses_subscription"),
        "subscription_pauses",
        ["subscription_id", "first_day"],
    )
    with op.batch_alter_table("invoice_lines") as batch:
        batch.drop_constraint(op.f("uq_invoice_lines_subscription_period"), type_="unique")
        batch.create_unique_constraint(
            op.f("uq_invoice_lines_subscription_period_day"),
            ["subscription_id", "period_start", "first_day"],
        )


def downgrade() -> None:
    """Refused where a subscription has two lines in a period (the old uniqueness)."""
    with op.batch_alter_table("invoice_lines") as batch:
        batch.drop_constraint(op.f("uq_invoice_lines_subscription_period_day"), type_="unique")
        batch.create_unique_constraint(
            op.f("uq_invoice_lines_subscription_period"), ["subscription_id", "period_start"]
        )
    op.drop_index(op.f("ix_subscription_pauses_subscription"), table_name="subscription_pauses")
    op.drop_index(op.f("ix_subscription_pauses_customer"), table_name="subscription_pauses")
    op.drop_table("subscription_pauses")
    op.drop_index(op.f("ix_subscription_tariffs_customer"), table_name="subscription_tariffs")
    op.drop_table("subscription_tariffs")
    op.drop_table("tariff_prices")
