"""Reading customer accounts: by id, by user, and the staff search."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domains.customers.models import Customer
from domains.identity.models import User
from domains.keyset import Ordering, Page, Window, fetch_pages
from domains.rows import fetch_rows, select_rows

customers = Customer.__table__
users = User.__table__


@dataclass(frozen=True, slots=True)
class CustomerRow:
    id: int
    user_id: int
    contract_num: str
    full_name: str
    phone: str | None
    balance: Decimal
    currency: str
    created_at: datetime


CUSTOMER_ORDER = Ordering((customers.c.id,), descending=False)


async def customers_by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, CustomerRow]:
    stmt = select_rows(CustomerRow, customers).where(customers.c.id.in_(ids))
    return {row.id: row for row in await fetch_rows(conn, CustomerRow, stmt)}


async def customers_by_user_ids(
    conn: AsyncConnection, user_ids: Sequence[int]
) -> dict[int, CustomerRow]:
    stmt = select_rows(CustomerRow, customers).where(customers.c.user_id.in_(user_ids))
    return {row.user_id: row for row in await fetch_rows(conn, CustomerRow, stmt)}


async def search_customers(
    conn: AsyncConnection, search: str | None, window: Window
) -> Page[CustomerRow]:
    """Staff search: contract number or email prefix, or any part of the name."""
    stmt = select_rows(CustomerRow, customers)
    term = (search or "").strip().lower()
    if term:
        escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        owner_emails = select(users.c.id).where(
            func.lower(users.c.email).like(f"{escaped}%", escape="\\")
        )
        stmt = stmt.where(
            or_(
                func.lower(customers.c.contract_num).like(f"{escaped}%", escape="\\"),
                func.lower(customers.c.full_name).like(f"%{escaped}%", escape="\\"),
                customers.c.user_id.in_(owner_emails),
            )
        )
    pages = await fetch_pages(conn, CustomerRow, stmt, CUSTOMER_ORDER, window)
    return pages[None]
