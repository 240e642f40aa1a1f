"""The customers subgraph: subscriber accounts, contracts, subscriptions, tariffs."""

from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from domains.customers.contract import ContractRow
from domains.customers.customer import CustomerRow
from domains.customers.models import ContractStatus, Segment, SubscriptionStatus
from domains.customers.subscription import SubscriptionRow
from domains.customers.tariff import TariffRow
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


@strawberry.federation.type(keys=["id"], description="A service agreement at one address.")
class Contract(Node):
    id: strawberry.ID = node_id("Contract")
    address: str = strawberry.field(description="Where the service is delivered.")
    status: ContractState
    start_date: date
    end_date: date | None
    tariff: Tariff = strawberry.field(resolver=customer_resolvers.contract_tariff)
    customer: CustomerRef = strawberry.field(resolver=customer_resolvers.contract_customer)

    is_type_of = is_row(ContractRow)

    @classmethod
    async def resolve_reference(cls, info: strawberry.Info, id: strawberry.ID) -> ContractRow:
        return await customer_resolvers.contract_by_pk(info, pk_of(id, "Contract"))


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


@strawberry.type
class Query:
    customer: CustomerRef = strawberry.field(
        resolver=customer_resolvers.customer, description="A customer account (staff)."
    )
    customers: Connection[CustomerRef] = strawberry.field(
        resolver=customer_resolvers.customers,
        description="Staff search by contract number, email or name.",
    )
    tariffs: list[Tariff] = strawberry.field(
        resolver=customer_resolvers.tariffs, description="The tariff catalogue, cheapest first."
    )


@strawberry.type
class Mutation:
    update_my_profile: CustomerRef = strawberry.field(
        resolver=customer_resolvers.update_my_profile,
        description="Change the viewer's own name or phone; nothing else is theirs to set.",
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
        "Mutation.updateMyProfile": Access.CUSTOMER,
        "Customer": Access.SIGNED_IN,
        "CustomerConnection": Access.STAFF,
        "CustomerEdge": Access.STAFF,
        "Contract": Access.SIGNED_IN,
        "ServiceSubscription": Access.SIGNED_IN,
        "Tariff": Access.PUBLIC,
    },
)
