"""Reading contracts: the service agreements behind a customer's connections."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy.ext.asyncio import AsyncConnection

from domains.customers.models import Contract, ContractStatus
from domains.rows import fetch_rows, group_by, select_rows

contracts = Contract.__table__


@dataclass(frozen=True, slots=True)
class ContractRow:
    id: int
    customer_id: int
    tariff_id: int
    address: str
    status: ContractStatus
    start_date: date
    end_date: date | None


async def contracts_by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, ContractRow]:
    stmt = select_rows(ContractRow, contracts).where(contracts.c.id.in_(ids))
    return {row.id: row for row in await fetch_rows(conn, ContractRow, stmt)}


async def contracts_by_customer_ids(
    conn: AsyncConnection, customer_ids: Sequence[int]
) -> dict[int, list[ContractRow]]:
    stmt = (
        select_rows(ContractRow, contracts)
        .where(contracts.c.customer_id.in_(customer_ids))
        .order_by(contracts.c.start_date, contracts.c.id)
    )
    return group_by(await fetch_rows(conn, ContractRow, stmt), "customer_id", customer_ids)
