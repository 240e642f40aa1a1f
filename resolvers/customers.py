"""Customer resolvers: accounts, contracts, subscriptions and tariffs."""

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from operator import attrgetter
from typing import Annotated, Any

import strawberry
from strawberry import Info

from dataloaders.customers import (
    ContractsByCustomerIdLoader,
    ContractsByIdLoader,
    CustomersByIdLoader,
    CustomersByUserIdLoader,
    PausesBySubscriptionIdLoader,
    SubscriptionsByCustomerIdLoader,
    SubscriptionsByIdLoader,
    TariffsByIdLoader,
    TariffSpansBySubscriptionIdLoader,
)
from dataloaders.identity import UsersByIdLoader
from domains.customers.contract import ContractRow
from domains.customers.contract_admin import (
    ServiceAddress,
    create_contract,
    create_subscription,
    update_contract,
)
from domains.customers.customer import CUSTOMER_ORDER, CustomerRow, search_customers
from domains.customers.models import Segment
from domains.customers.pause import PauseOutcome, PauseRow, pause_subscription, resume_subscription
from domains.customers.profile import update_profile
from domains.customers.provisioning import create_customer
from domains.customers.subscription import SubscriptionRow
from domains.customers.tariff import TariffRow, list_tariffs
from domains.customers.tariff_admin import archive_tariff, change_tariff_price, create_tariff
from domains.customers.tariff_change import (
    ChangeWhen,
    TariffChange,
    available_tariffs,
    cancel_tariff_change,
    change_tariff,
)
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


@dataclass(frozen=True, slots=True)
class TariffSpanView:
    """A dated tariff of a subscription, and whether its day is still ahead."""

    first_day: date
    tariff_id: int
    scheduled: bool


async def subscription_tariff_history(
    root: SubscriptionRow, info: Info[Context]
) -> list[TariffSpanView]:
    spans = await info.context.loaders.of(TariffSpansBySubscriptionIdLoader).load(root.id)
    today = info.context.lifecycle.today(info.context.clock)
    return [TariffSpanView(s.first_day, s.tariff_id, s.first_day > today) for s in spans]


@lookup(PausesBySubscriptionIdLoader, attrgetter("id"))
async def subscription_pauses(root: SubscriptionRow, info: Info[Context]) -> list[PauseRow]:
    """Oldest first."""


async def span_tariff(root: TariffSpanView, info: Info[Context]) -> TariffRow:
    return await tariff_by_pk(info, root.tariff_id)


async def available_tariffs_of(
    info: Info[Context], subscription_id: strawberry.ID
) -> list[TariffRow]:
    subscription = await subscription_by_pk(info, pk_of(subscription_id, "Subscription"))
    async with info.context.db.read() as reader:
        catalogue = await list_tariffs(reader, include_archived=False)
        return await available_tariffs(reader, subscription, catalogue)


async def change_subscription_tariff(
    info: Info[Context],
    subscription_id: strawberry.ID,
    tariff_id: strawberry.ID,
    when: ChangeWhen = ChangeWhen.NOW,
) -> TariffChange:
    context = info.context
    return await change_tariff(
        context.db,
        context.signed_in,
        pk_of(subscription_id, "Subscription"),
        pk_of(tariff_id, "Tariff"),
        when,
        terms=context.lifecycle,
        clock=context.clock,
    )


async def cancel_subscription_tariff_change(
    info: Info[Context], subscription_id: strawberry.ID
) -> SubscriptionRow:
    context = info.context
    return await cancel_tariff_change(
        context.db,
        context.signed_in,
        pk_of(subscription_id, "Subscription"),
        terms=context.lifecycle,
        clock=context.clock,
    )


async def pause(
    info: Info[Context],
    subscription_id: strawberry.ID,
    first_day: Annotated[date, strawberry.argument(name="from")],
    until: date,
) -> PauseOutcome:
    context = info.context
    return await pause_subscription(
        context.db,
        context.signed_in,
        pk_of(subscription_id, "Subscription"),
        first_day,
        until,
        terms=context.lifecycle,
        clock=context.clock,
    )


async def resume(info: Info[Context], subscription_id: strawberry.ID) -> PauseOutcome:
    context = info.context
    return await resume_subscription(
        context.db,
        context.signed_in,
        pk_of(subscription_id, "Subscription"),
        terms=context.lifecycle,
        clock=context.clock,
    )


async def new_tariff(
    info: Info[Context],
    code: str,
    name: str,
    segment: Segment,
    monthly_price: Decimal,
    download_mbps: int,
    upload_mbps: int,
    description: str = "",
    currency: str = "RUB",
) -> TariffRow:
    return await create_tariff(
        info.context.db,
        info.context.signed_in,
        code=code,
        name=name,
        description=description,
        segment=segment,
        monthly_price=monthly_price,
        currency=currency,
        download_mbps=download_mbps,
        upload_mbps=upload_mbps,
    )


async def reprice_tariff(
    info: Info[Context], tariff_id: strawberry.ID, monthly_price: Decimal, effective_from: date
) -> TariffRow:
    context = info.context
    return await change_tariff_price(
        context.db,
        context.signed_in,
        pk_of(tariff_id, "Tariff"),
        monthly_price,
        effective_from,
        terms=context.lifecycle,
        clock=context.clock,
    )


async def archive(info: Info[Context], tariff_id: strawberry.ID) -> TariffRow:
    return await archive_tariff(info.context.db, info.context.signed_in, pk_of(tariff_id, "Tariff"))


async def change_tariff_of(root: TariffChange, info: Info[Context]) -> TariffRow:
    return await tariff_by_pk(info, root.tariff_id)


async def new_customer(
    info: Info[Context],
    email: str,
    full_name: str,
    contract_num: str,
    phone: str | None = None,
) -> CustomerRow:
    customer = await create_customer(
        info.context.auth,
        info.context.signed_in,
        email=email,
        full_name=full_name,
        contract_num=contract_num,
        phone=phone,
    )
    info.context.loaders.of(CustomersByIdLoader).prime(customer.id, customer)
    return customer


def contract_service_address(root: ContractRow) -> ServiceAddress | None:
    if root.postal_code is None:
        return None
    return ServiceAddress(
        region=root.region or "",
        city=root.city or "",
        street=root.street or "",
        house=root.house or "",
        postal_code=root.postal_code,
        flat=root.flat,
    )


def _address(given: Any) -> ServiceAddress:
    return ServiceAddress(
        region=given.region,
        city=given.city,
        street=given.street,
        house=given.house,
        postal_code=given.postal_code,
        flat=given.flat,
    )


async def new_contract(
    info: Info[Context],
    customer_id: strawberry.ID,
    tariff_id: strawberry.ID,
    starts_on: date,
    address: Any,
) -> ContractRow:
    context = info.context
    contract = await create_contract(
        context.db,
        context.signed_in,
        customer_id=pk_of(customer_id, "Customer"),
        tariff_id=pk_of(tariff_id, "Tariff"),
        starts_on=starts_on,
        address=_address(address),
        terms=context.lifecycle,
        clock=context.clock,
    )
    context.loaders.of(ContractsByIdLoader).prime(contract.id, contract)
    return contract


async def edit_contract(
    info: Info[Context], contract_id: strawberry.ID, address: Any
) -> ContractRow:
    context = info.context
    contract = await update_contract(
        context.db, context.signed_in, pk_of(contract_id, "Contract"), address=_address(address)
    )
    context.loaders.of(ContractsByIdLoader).prime(contract.id, contract)
    return contract


async def new_subscription(
    info: Info[Context], contract_id: strawberry.ID, tariff_id: strawberry.ID, starts_on: date
) -> SubscriptionRow:
    context = info.context
    subscription = await create_subscription(
        context.db,
        context.signed_in,
        contract_id=pk_of(contract_id, "Contract"),
        tariff_id=pk_of(tariff_id, "Tariff"),
        starts_on=starts_on,
        terms=context.lifecycle,
        clock=context.clock,
    )
    context.loaders.of(SubscriptionsByIdLoader).prime(subscription.id, subscription)
    return subscription
