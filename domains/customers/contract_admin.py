"""Staff provision service (admins): a contract at a structured service address, its
address changed, a subscription on it.

The address is its parts (region, city, street, house, flat, postal code), which staff
search; the contract's `address` is the display form written from them here, on every
change, so the two never disagree. A contract or subscription starts today or later (in
the billing time zone): the days before it were billed by nobody and stay so. A
subscription starts at the first moment of its day there, so the monthly run bills that
day (domains/billing/proration.py), on an active contract and an active tariff.
"""

import re
from dataclasses import dataclass
from datetime import date, datetime, time

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domains.clock import SYSTEM_CLOCK, Clock
from domains.customers.contract import ContractRow, contracts
from domains.customers.customer import customers
from domains.customers.errors import ContractTerminated, TariffArchived
from domains.customers.models import ContractStatus, SubscriptionStatus
from domains.customers.subscription import SubscriptionRow, subscriptions
from domains.customers.tariff import tariffs
from domains.customers.terms import LifecycleTerms
from domains.database import Database
from domains.errors import Forbidden, InvalidInput, NotFound
from domains.identity.models import Role
from domains.identity.viewer import Viewer
from domains.reads import row_columns

# Russian Post's index: six digits.
_POSTAL_CODE = re.compile(r"^\d{6}$")
_LIMITS = {"region": 100, "city": 100, "street": 150, "house": 20, "flat": 20}


@dataclass(frozen=True, slots=True)
class ServiceAddress:
    region: str
    city: str
    street: str
    house: str
    postal_code: str
    flat: str | None = None

    def valid(self) -> "ServiceAddress":
        """Spaces collapsed; each part present and within its column, the flat optional."""
        parts: dict[str, str | None] = {}
        for name, limit in _LIMITS.items():
            given = getattr(self, name)
            value = " ".join(given.split()) if given is not None else None
            if name == "flat" and not value:
                parts[name] = None
                continue
            if not value or len(value) > limit:
                raise InvalidInput(f"address {name} must be 1 to {limit} characters")
            parts[name] = value
        code = self.postal_code.strip()
        if not _POSTAL_CODE.match(code):
            raise InvalidInput("address postalCode is six digits")
        return ServiceAddress(postal_code=code, **parts)  # type: ignore[arg-type]

    @property
    def display(self) -> str:
        """How bills and the portal print it: «123456, region, city, street, house, кв. 5»."""
        parts = [self.postal_code, self.region, self.city, self.street, self.house]
        if self.flat:
            parts.append(f"кв. {self.flat}")
        return ", ".join(parts)

    @property
    def columns(self) -> dict[str, str | None]:
        return {
            "address": self.display,
            "region": self.region,
            "city": self.city,
            "street": self.street,
            "house": self.house,
            "flat": self.flat,
            "postal_code": self.postal_code,
        }


def _admin(viewer: Viewer) -> None:
    if viewer.role is not Role.ADMIN:
        raise Forbidden("only admins provision contracts and subscriptions")


def _from_today(day: date, terms: LifecycleTerms, clock: Clock) -> None:
    if day < terms.today(clock):
        raise InvalidInput("it starts today or later: past days are not billed again")


async def _active_tariff(tx: AsyncSession, tariff_id: int) -> None:
    active = (
        await tx.execute(select(tariffs.c.is_active).where(tariffs.c.id == tariff_id))
    ).scalar_one_or_none()
    if active is None:
        raise NotFound("tariff")
    if not active:
        raise TariffArchived("an archived tariff is offered to no one")


async def _open_contract(tx: AsyncSession, contract_id: int) -> ContractRow:
    """The contract, locked: its changes and its termination take it in turn."""
    row = (
        await tx.execute(
            select(*row_columns(ContractRow, contracts))
            .where(contracts.c.id == contract_id)
            .with_for_update()
        )
    ).one_or_none()
    if row is None:
        raise NotFound("contract")
    contract = ContractRow(*row)
    if contract.status is ContractStatus.TERMINATED:
        raise ContractTerminated(f"contract {contract_id} is terminated")
    return contract


async def create_contract(
    db: Database,
    viewer: Viewer,
    *,
    customer_id: int,
    tariff_id: int,
    starts_on: date,
    address: ServiceAddress,
    terms: LifecycleTerms,
    clock: Clock = SYSTEM_CLOCK,
) -> ContractRow:
    _admin(viewer)
    place = address.valid()
    _from_today(starts_on, terms, clock)
    async with db.transaction() as tx:
        found = await tx.execute(select(customers.c.id).where(customers.c.id == customer_id))
        if found.first() is None:
            raise NotFound("customer")
        await _active_tariff(tx, tariff_id)
        made = await tx.execute(
            insert(contracts)
            .values(
                customer_id=customer_id,
                tariff_id=tariff_id,
                status=ContractStatus.ACTIVE,
                start_date=starts_on,
                **place.columns,
            )
            .returning(*row_columns(ContractRow, contracts))
        )
        return ContractRow(*made.one())


async def update_contract(
    db: Database, viewer: Viewer, contract_id: int, *, address: ServiceAddress
) -> ContractRow:
    """A new service address (a move within the contract); a terminated one stays as it
    ended."""
    _admin(viewer)
    place = address.valid()
    async with db.transaction() as tx:
        await _open_contract(tx, contract_id)
        updated = await tx.execute(
            update(contracts)
            .where(contracts.c.id == contract_id)
            .values(**place.columns)
            .returning(*row_columns(ContractRow, contracts))
        )
        return ContractRow(*updated.one())


async def create_subscription(
    db: Database,
    viewer: Viewer,
    *,
    contract_id: int,
    tariff_id: int,
    starts_on: date,
    terms: LifecycleTerms,
    clock: Clock = SYSTEM_CLOCK,
) -> SubscriptionRow:
    _admin(viewer)
    _from_today(starts_on, terms, clock)
    async with db.transaction() as tx:
        contract = await _open_contract(tx, contract_id)
        if starts_on < contract.start_date:
            raise InvalidInput(f"the contract starts on {contract.start_date}")
        await _active_tariff(tx, tariff_id)
        made = await tx.execute(
            insert(subscriptions)
            .values(
                customer_id=contract.customer_id,
                contract_id=contract_id,
                tariff_id=tariff_id,
                status=SubscriptionStatus.ACTIVE,
                started_at=start_of(starts_on, terms),
            )
            .returning(*row_columns(SubscriptionRow, subscriptions))
        )
        return SubscriptionRow(*made.one())


def start_of(day: date, terms: LifecycleTerms) -> datetime:
    """The day's first moment in the billing time zone, as UTC is stored."""
    return datetime.combine(day, time(), terms.zone)
