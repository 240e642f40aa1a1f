"""Customer resolvers: accounts, contracts, subscriptions and tariffs."""

from operator import attrgetter
from typing import Any

import strawberry
from strawberry import Info

from dataloaders.customers import (
    ContractsByCustomerIdLoader,
    ContractsByIdLoader,
    CustomersByIdLoader,
    CustomersByUserIdLoader,
    SubscriptionsByCustomerIdLoader,
    SubscriptionsByIdLoader,
    TariffsByIdLoader,
)
from dataloaders.identity import UsersByIdLoader
from domains.customers.contract import ContractRow
from domains.customers.customer import CUSTOMER_ORDER, CustomerRow, search_customers
from domains.customers.profile import update_profile
from domains.customers.subscription import SubscriptionRow
from domains.customers.tariff import TariffRow, list_tariffs
from domains.errors import Forbidden, NotFound
from domains.identity.user import UserRow
from domains.money import Money
from resolvers.access import load_owned
from resolvers.context import Context
from resolvers.identity import visible_user
from resolvers.lookup import lookup
from resolvers.relay import Connection, connection_from_page, pk_of, window_from_arguments


async def customer_by_pk(info: Info[Context], pk: int) -> CustomerRow:
    info.context.signed_in.check_customer(pk, "customer")
    customer = await info.context.loaders.of(CustomersByIdLoader).load(pk)
    if customer is None:
        raise NotFound("customer")
    return customer


async def contract_by_pk(info: Info[Context], pk: int) -> ContractRow:
    return await load_owned(info, info.context.loaders.of(ContractsByIdLoader), pk, "contract")


async def subscription_by_pk(info: Info[Context], pk: int) -> SubscriptionRow:
    return await load_owned(
        info, info.context.loaders.of(SubscriptionsByIdLoader), pk, "subscription"
    )


async def tariff_by_pk(info: Info[Context], pk: int) -> TariffRow:
    tariff = await info.context.loaders.of(TariffsByIdLoader).load(pk)
    return _found_tariff(tariff, None, info.context)


async def customer(info: Info[Context], id: strawberry.ID) -> CustomerRow:
    return await customer_by_pk(info, pk_of(id, "Customer"))


async def customers(
    info: Info[Context],
    search: str | None = None,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
) -> Connection[CustomerRow]:
    if not info.context.signed_in.is_staff:
        raise Forbidden("only staff can list customers")
    window = window_from_arguments(CUSTOMER_ORDER, first, after, last, before)
    async with info.context.db.read() as reader:
        page = await search_customers(reader, search, window)
    return connection_from_page(page, CUSTOMER_ORDER)


async def tariffs(info: Info[Context], include_archived: bool = False) -> list[TariffRow]:
    """The public catalogue; archived tariffs are for staff."""
    if include_archived and (info.context.viewer is None or not info.context.viewer.is_staff):
        raise Forbidden("only staff can list archived tariffs")
    async with info.context.db.read() as reader:
        return await list_tariffs(reader, include_archived=include_archived)


def _found_tariff(tariff: TariffRow | None, _parent: Any, _context: Context | None) -> TariffRow:
    if tariff is None:
        raise NotFound("tariff")
    return tariff


@lookup(CustomersByUserIdLoader, attrgetter("id"))
async def user_customer(root: UserRow, info: Info[Context]) -> CustomerRow | None:
    """The account a customer user owns; staff own none."""


@lookup(UsersByIdLoader, attrgetter("user_id"), visible_user)
async def customer_user(root: CustomerRow, info: Info[Context]) -> UserRow:
    """The customer's login."""


@lookup(ContractsByCustomerIdLoader, attrgetter("id"))
async def customer_contracts(root: CustomerRow, info: Info[Context]) -> list[ContractRow]:
    """Oldest first."""


@lookup(SubscriptionsByCustomerIdLoader, attrgetter("id"))
async def customer_subscriptions(root: CustomerRow, info: Info[Context]) -> list[SubscriptionRow]:
    """Oldest first."""


async def contract_customer(root: ContractRow, info: Info[Context]) -> CustomerRow:
    return await customer_by_pk(info, root.customer_id)


@lookup(TariffsByIdLoader, attrgetter("tariff_id"), _found_tariff)
async def contract_tariff(root: ContractRow, info: Info[Context]) -> TariffRow:
    """The contract's tariff."""


@lookup(TariffsByIdLoader, attrgetter("tariff_id"), _found_tariff)
async def subscription_tariff(root: SubscriptionRow, info: Info[Context]) -> TariffRow:
    """The subscription's tariff."""


async def subscription_contract(root: SubscriptionRow, info: Info[Context]) -> ContractRow:
    return await contract_by_pk(info, root.contract_id)


def tariff_monthly_price(root: TariffRow) -> Money:
    return Money(root.monthly_price, root.currency)


async def update_my_profile(
    info: Info[Context], full_name: str | None = None, phone: str | None = None
) -> CustomerRow:
    return await update_profile(
        info.context.db, info.context.signed_in, full_name=full_name, phone=phone
    )
