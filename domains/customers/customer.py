"""Reading customer accounts: by id, by user, and the staff search."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Select, bindparam, func, or_, select

from domains.customers.models import Contract, Customer
from domains.identity.models import User
from domains.keyset import Ordering, Page, PageRead, Window
from domains.reads import Read, Reader, any_of, select_rows

customers = Customer.__table__
contracts = Contract.__table__
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

CUSTOMERS_BY_ID = Read(
    CustomerRow, select_rows(CustomerRow, customers).where(any_of(customers.c.id, "ids"))
)
CUSTOMERS_BY_USER_ID = Read(
    CustomerRow,
    select_rows(CustomerRow, customers).where(any_of(customers.c.user_id, "user_ids")),
)


def _search(searching: bool) -> Select:
    """Contract number or email prefix, any part of the name, of the phone number (`phone`:
    the term's digits) or of a contract's service address (`prefix`, `part`, `phone`: LIKE
    patterns, escaped); everyone when not searching."""
    stmt = select_rows(CustomerRow, customers)
    if not searching:
        return stmt
    prefix, part = bindparam("prefix"), bindparam("part")
    owner_emails = select(users.c.id).where(func.lower(users.c.email).like(prefix, escape="\\"))
    served_at = select(contracts.c.customer_id).where(
        func.lower(contracts.c.address).like(part, escape="\\")
    )
    return stmt.where(
        or_(
            func.lower(customers.c.contract_num).like(prefix, escape="\\"),
            func.lower(customers.c.full_name).like(part, escape="\\"),
            customers.c.phone.like(bindparam("phone"), escape="\\"),
            customers.c.user_id.in_(owner_emails),
            customers.c.id.in_(served_at),
        )
    )


CUSTOMER_SEARCH = PageRead(CustomerRow, _search, CUSTOMER_ORDER)


async def customers_by_ids(reader: Reader, ids: Sequence[int]) -> dict[int, CustomerRow]:
    return {row.id: row for row in await reader.fetch(CUSTOMERS_BY_ID, ids=ids)}


async def customers_by_user_ids(reader: Reader, user_ids: Sequence[int]) -> dict[int, CustomerRow]:
    return {row.user_id: row for row in await reader.fetch(CUSTOMERS_BY_USER_ID, user_ids=user_ids)}


async def search_customers(reader: Reader, search: str | None, window: Window) -> Page[CustomerRow]:
    """Staff search: contract number or email prefix, or any part of the name, phone or
    service address."""
    term = (search or "").strip().lower()
    if not term:
        return await CUSTOMER_SEARCH.page(reader, window, shape=False)
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    # Phones are stored in E.164: "+7 (916) 123" finds "+7916123...". A term with no digit
    # matches no phone.
    digits = "".join(c for c in term if c.isdigit())
    return await CUSTOMER_SEARCH.page(
        reader,
        window,
        shape=True,
        prefix=f"{escaped}%",
        part=f"%{escaped}%",
        phone=f"%{digits}%" if digits else "",
    )
