"""The customers subgraph: subscriber accounts, contracts, subscriptions, tariffs."""

from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import strawberry

from domains.customers.contract import ContractRow
from domains.customers.customer import CustomerRow
from domains.customers.models import ContractStatus, Segment, SubscriptionStatus
from domains.customers.pause import PauseRow
from domains.customers.subscription import SubscriptionRow
from domains.customers.tariff import TariffRow
from domains.customers.tariff_change import ChangeWhen
from resolvers import customers as customer_resolvers
from resolvers.relay import pk_of
from schema.access import Access
from schema.plugin import Domain
from schema.shared import Connection, Money, Node, is_row, node_id

if TYPE_CHECKING:
    from schema.entities import Customer, User

CustomerRef = Annotated["Customer", strawberry.lazy("schema.entities")]
UserRef = Annotated["User", strawberry.lazy("schema.entities")]

TariffSegment = strawberry.enum(Segment, name="TariffSegment")
ContractState = strawberry.enum(ContractStatus, name="ContractStatus")
SubscriptionState = strawberry.enum(SubscriptionStatus, name="SubscriptionStatus")
TariffChangeWhen = strawberry.enum(
    ChangeWhen,
    name="TariffChangeWhen",
    description="NOW (upgrades only) or PERIOD_END (the 1st of next month).",
)


@strawberry.federation.type(keys=["id"], description="A plan from the catalogue.")
class Tariff(Node):
    id: strawberry.ID = node_id("Tariff")
    code: str
    name: str
    description: str
    segment: TariffSegment
    download_mbps: int = strawberry.field(description="Download speed, Mbit/s.")
    upload_mbps: int = strawberry.field(description="Upload speed, Mbit/s.")
    is_active: bool = strawberry.field(description="False once archived: no new contracts.")

    is_type_of = is_row(TariffRow)

    monthly_price: Money = strawberry.field(
        resolver=customer_resolvers.tariff_monthly_price, description="Price per month."
    )

    @classmethod
    async def resolve_reference(cls, info: strawberry.Info, id: strawberry.ID) -> TariffRow:
        return await customer_resolvers.tariff_by_pk(info, pk_of(id, "Tariff"))


@strawberry.type(description="Where a contract's service is delivered, in parts staff search.")
class ServiceAddress:
    region: str
    city: str
    street: str
    house: str
    flat: str | None
    postal_code: str = strawberry.field(description="Russian Post's six-digit index.")


@strawberry.input(description="A service address; the flat may be left out.")
class ServiceAddressInput:
    region: str
    city: str
    street: str
    house: str
    postal_code: str
    flat: str | None = None


@strawberry.federation.type(keys=["id"], description="A service agreement at one address.")
class Contract(Node):
    id: strawberry.ID = node_id("Contract")
    address: str = strawberry.field(
        description="Where the service is delivered, as printed: written from serviceAddress "
        "(a free text on contracts from before it)."
    )
    service_address: ServiceAddress | None = strawberry.field(
        resolver=customer_resolvers.contract_service_address,
        description="Its parts; null on a contract from before them.",
    )
    status: ContractState
    start_date: date
    end_date: date | None
    tariff: Tariff = strawberry.field(resolver=customer_resolvers.contract_tariff)
    customer: CustomerRef = strawberry.field(resolver=customer_resolvers.contract_customer)

    is_type_of = is_row(ContractRow)

    @classmethod
    async def resolve_reference(cls, info: strawberry.Info, id: strawberry.ID) -> ContractRow:
        return await customer_resolvers.contract_by_pk(info, pk_of(id, "Contract"))


@strawberry.type(description="A subscription's tariff from a day on, to the next one's day.")
class TariffSpan:
    first_day: date
    scheduled: bool = strawberry.field(
        description="Still ahead: a scheduled change (cancelTariffChange drops it)."
    )
    tariff: Tariff = strawberry.field(resolver=customer_resolvers.span_tariff)


@strawberry.type(
    description="A voluntary pause: the days from firstDay to the day before until (or "
    "before resumedOn) are not billed."
)
class SubscriptionPause:
    id: strawberry.ID = node_id("SubscriptionPause")
    first_day: date
    until: date
    resumed_on: date | None

    is_type_of = is_row(PauseRow)


# Named apart from the root `Subscription` type (live updates), which Federation reserves.
@strawberry.federation.type(
    keys=["id"], name="ServiceSubscription", description="A tariff running on a contract."
)
class Subscription(Node):
    id: strawberry.ID = node_id("Subscription")
    status: SubscriptionState
    started_at: datetime
    ended_at: datetime | None
    tariff: Tariff = strawberry.field(resolver=customer_resolvers.subscription_tariff)
    contract: Contract = strawberry.field(resolver=customer_resolvers.subscription_contract)
    tariff_history: list[TariffSpan] = strawberry.field(
        resolver=customer_resolvers.subscription_tariff_history,
        description="Its dated tariffs, oldest first; empty when it never changed tariff.",
    )
    pauses: list[SubscriptionPause] = strawberry.field(
        resolver=customer_resolvers.subscription_pauses, description="Oldest first."
    )

    is_type_of = is_row(SubscriptionRow)

    @classmethod
    async def resolve_reference(cls, info: strawberry.Info, id: strawberry.ID) -> SubscriptionRow:
        return await customer_resolvers.subscription_by_pk(info, pk_of(id, "Subscription"))


@strawberry.type(description="A subscriber's account.")
class CustomerFields:
    """The customers subgraph's part of `Customer`."""

    id: strawberry.ID = node_id("Customer")
    contract_num: str = strawberry.field(description="The account number printed on bills.")
    full_name: str
    phone: str | None
    created_at: datetime
    user: UserRef = strawberry.field(resolver=customer_resolvers.customer_user)
    contracts: list[Contract] = strawberry.field(resolver=customer_resolvers.customer_contracts)
    subscriptions: list[Subscription] = strawberry.field(
        resolver=customer_resolvers.customer_subscriptions
    )

    is_type_of = is_row(CustomerRow)

    @classmethod
    async def resolve_reference(cls, info: strawberry.Info, id: strawberry.ID) -> CustomerRow:
        return await customer_resolvers.customer_by_pk(info, pk_of(id, "Customer"))


@strawberry.type
class UserCustomerFields:
    """The customers subgraph's part of `User`."""

    customer: CustomerRef | None = strawberry.field(
        resolver=customer_resolvers.user_customer, description="The account a customer user owns."
    )


@strawberry.type(description="A tariff change made: from which day, and whether it waits.")
class TariffChangePayload:
    subscription: Subscription
    effective_from: date
    scheduled: bool = strawberry.field(description="True for a change at the period's end.")
    tariff: Tariff = strawberry.field(resolver=customer_resolvers.change_tariff_of)


@strawberry.type
class PausePayload:
    subscription: Subscription
    pause: SubscriptionPause


@strawberry.type
class Query:
    customer: CustomerRef = strawberry.field(
        resolver=customer_resolvers.customer, description="A customer account (staff)."
    )
    customers: Connection[CustomerRef] = strawberry.field(
        resolver=customer_resolvers.customers,
        description="Staff search by contract number, email, name, phone or service address.",
    )
    tariffs: list[Tariff] = strawberry.field(
        resolver=customer_resolvers.tariffs, description="The tariff catalogue, cheapest first."
    )
    available_tariffs: list[Tariff] = strawberry.field(
        resolver=customer_resolvers.available_tariffs_of,
        description="What a subscription may change to: active tariffs of its segment.",
    )


@strawberry.type
class Mutation:
    update_my_profile: CustomerRef = strawberry.field(
        resolver=customer_resolvers.update_my_profile,
        description="Change the viewer's own name or phone; nothing else is theirs to set.",
    )

    change_tariff: TariffChangePayload = strawberry.field(
        resolver=customer_resolvers.change_subscription_tariff,
        description="Change a subscription's tariff: a pricier one NOW (billed by day from "
        "today), any at PERIOD_END (scheduled, cancellable). The customer's own; admins any.",
    )
    cancel_tariff_change: Subscription = strawberry.field(
        resolver=customer_resolvers.cancel_subscription_tariff_change,
        description="Drop the scheduled tariff change.",
    )

    pause_subscription: PausePayload = strawberry.field(
        resolver=customer_resolvers.pause,
        description="Pause a subscription from `from` (today or later) until `until` (the "
        "day it resumes); the customer's own, or staff on their behalf.",
    )
    resume_subscription: PausePayload = strawberry.field(
        resolver=customer_resolvers.resume,
        description="End the running pause today, or drop the next one ahead.",
    )

    @strawberry.mutation(description="Add a tariff to the catalogue (admins).")
    async def create_tariff(
        self,
        info: strawberry.Info,
        code: str,
        name: str,
        segment: TariffSegment,
        monthly_price: Decimal,
        download_mbps: int,
        upload_mbps: int,
        description: str = "",
        currency: str = "RUB",
    ) -> Tariff:
        return await customer_resolvers.new_tariff(  # type: ignore[return-value]
            info,
            code,
            name,
            segment,
            monthly_price,
            download_mbps,
            upload_mbps,
            description,
            currency,
        )

    @strawberry.mutation(
        description="Change a tariff's monthly price from a day (today or later): every day "
        "from then is billed at it (admins)."
    )
    async def change_tariff_price(
        self,
        info: strawberry.Info,
        tariff_id: strawberry.ID,
        monthly_price: Decimal,
        effective_from: date,
    ) -> Tariff:
        return await customer_resolvers.reprice_tariff(  # type: ignore[return-value]
            info, tariff_id, monthly_price, effective_from
        )

    @strawberry.mutation(
        description="Open a contract for a customer at a service address, from a day (today "
        "or later), on an active tariff (admins)."
    )
    async def create_contract(
        self,
        info: strawberry.Info,
        customer_id: strawberry.ID,
        tariff_id: strawberry.ID,
        starts_on: date,
        address: ServiceAddressInput,
    ) -> Contract:
        return await customer_resolvers.new_contract(  # type: ignore[return-value]
            info, customer_id, tariff_id, starts_on, address
        )

    @strawberry.mutation(description="Change a contract's service address (admins).")
    async def update_contract(
        self, info: strawberry.Info, contract_id: strawberry.ID, address: ServiceAddressInput
    ) -> Contract:
        return await customer_resolvers.edit_contract(  # type: ignore[return-value]
            info, contract_id, address
        )

    create_subscription: Subscription = strawberry.field(
        resolver=customer_resolvers.new_subscription,
        description="Start a tariff on an active contract from a day (today or later), billed "
        "from that day (admins).",
    )

    create_customer: CustomerRef = strawberry.field(
        resolver=customer_resolvers.new_customer,
        description="Open a subscriber's account with their user (admins): the email gets an "
        "invitation whose link sets the password; staff never choose one.",
    )

    archive_tariff: Tariff = strawberry.field(
        resolver=customer_resolvers.archive,
        description="Offer a tariff no more; subscriptions on it keep it (admins).",
    )


domain = Domain(
    name="customers",
    query=Query,
    mutation=Mutation,
    nodes=(Contract, Subscription, Tariff),
    entity_parts={"Customer": CustomerFields, "User": UserCustomerFields},
    access={
        "Query.customer": Access.STAFF,
        "Query.customers": Access.STAFF,
        "Query.tariffs": Access.PUBLIC,
        "Query.availableTariffs": Access.SIGNED_IN,
        "Mutation.updateMyProfile": Access.CUSTOMER,
        # The customer's own subscription, or an admin's (operators are refused).
        "Mutation.changeTariff": Access.SIGNED_IN,
        "Mutation.cancelTariffChange": Access.SIGNED_IN,
        # The customer's own, or staff on their behalf.
        "Mutation.pauseSubscription": Access.SIGNED_IN,
        "Mutation.resumeSubscription": Access.SIGNED_IN,
        "Mutation.createTariff": Access.ADMIN,
        "Mutation.changeTariffPrice": Access.ADMIN,
        "Mutation.archiveTariff": Access.ADMIN,
        "Mutation.createCustomer": Access.ADMIN,
        "Mutation.createContract": Access.ADMIN,
        "Mutation.updateContract": Access.ADMIN,
        "Mutation.createSubscription": Access.ADMIN,
        "ServiceAddress": Access.SIGNED_IN,
        "TariffSpan": Access.SIGNED_IN,
        "SubscriptionPause": Access.SIGNED_IN,
        "TariffChangePayload": Access.SIGNED_IN,
        "PausePayload": Access.SIGNED_IN,
        "Customer": Access.SIGNED_IN,
        "CustomerConnection": Access.STAFF,
        "CustomerEdge": Access.STAFF,
        "Contract": Access.SIGNED_IN,
        "ServiceSubscription": Access.SIGNED_IN,
        "Tariff": Access.PUBLIC,
    },
    events=("tariff",),
)
