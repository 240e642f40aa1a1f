"""`node(id:)`: any object by its global id, under the same access rules as every other path."""

from collections.abc import Awaitable, Callable
from typing import Any

import strawberry
from strawberry import Info

from domains.errors import NotFound
from resolvers import billing, customers, identity
from resolvers.context import Context
from resolvers.relay import parse_global_id

_LOADERS: dict[str, Callable[[Info[Context], int], Awaitable[Any]]] = {
    "User": identity.user_by_pk,
    "Customer": customers.customer_by_pk,
    "Contract": customers.contract_by_pk,
    "Subscription": customers.subscription_by_pk,
    "Tariff": customers.tariff_by_pk,
    "Invoice": billing.invoice_by_pk,
    "Payment": billing.payment_by_pk,
    "Transaction": billing.transaction_by_pk,
}


async def node(info: Info[Context], id: strawberry.ID) -> Any:
    type_name, pk = parse_global_id(id)
    load = _LOADERS.get(type_name)
    if load is None:
        raise NotFound("node")
    return await load(info, pk)
