"""Reading contracts: the service agreements behind a customer's connections."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from domains.customers.models import Contract, ContractStatus
from domains.reads import Read, Reader, any_of, group_by, select_rows

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
    # The service address's parts; None on a contract from before them (its `address` is
    # a free text).
    region: str | None
    city: str | None
    street: str | None
    house: str | None
    flat: str | None
    postal_code: str | None


CONTRACTS_BY_ID = Read(
    ContractRow, select_rows(ContractRow, contracts).where(any_of(contracts.c.id, "ids"))
)
CONTRACTS_BY_CUSTOMER_ID = Read(
    ContractRow,
    select_rows(ContractRow, contracts)
    .where(any_of(contracts.c.customer_id, "customer_ids"))
    .order_by(contracts.c.start_date, contracts.c.id),
)


async def contracts_by_ids(reader: Reader, ids: Sequence[int]) -> dict[int, ContractRow]:
    return {row.id: row for row in await reader.fetch(CONTRACTS_BY_ID, ids=ids)}


async def contracts_by_customer_ids(
    reader: Reader, customer_ids: Sequence[int]
) -> dict[int, list[ContractRow]]:
    rows = await reader.fetch(CONTRACTS_BY_CUSTOMER_ID, customer_ids=customer_ids)
    return group_by(rows, "customer_id", customer_ids)
