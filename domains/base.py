"""Declarative base and the column types every domain shares (money, UTC time)."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, Integer, MetaData, Numeric, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase

# Stable constraint names keep Alembic migrations identical on PostgreSQL and SQLite.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT (BIGSERIAL) on PostgreSQL; SQLite only autoincrements an INTEGER primary key.
BigId = BigInteger().with_variant(Integer(), "sqlite")

MONEY_PRECISION = 12
MONEY_SCALE = 2
CENT = Decimal(1).scaleb(-MONEY_SCALE)
# The least amount a money column cannot hold: numeric(12,2) keeps ten whole digits.
MAX_MONEY = Decimal(10) ** (MONEY_PRECISION - MONEY_SCALE)


class MoneyNumeric(TypeDecorator[Decimal]):
    """numeric(12,2); values are Decimal on the way in and out, never float, and a value the
    column cannot hold exactly (a fraction of a cent, ten billion) is refused, not rounded:
    actions check amounts first, so reaching here is a bug to see, not to round away."""

    impl = Numeric(MONEY_PRECISION, MONEY_SCALE, asdecimal=True)
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError(f"money must be Decimal, got {type(value).__name__}")
        if not (value.is_finite() and abs(value) < MAX_MONEY):
            raise ValueError(f"{value} does not fit a money column (numeric(12,2))")
        cents = value.quantize(CENT)
        if value != cents:
            raise ValueError(f"{value} does not fit a money column (numeric(12,2))")
        return cents


class UTCDateTime(TypeDecorator[datetime]):
    """timestamptz on PostgreSQL; on SQLite, which drops the zone, values come back as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type:
        # A keyset cursor over a time column (domains/keyset.py) reads its values back as this.
        return datetime

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: the system stores timezone-aware UTC only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is UTC:  # the driver's own timestamptz: as it is
            return value
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
