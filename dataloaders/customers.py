"""Customer loaders: accounts, contracts, subscriptions and tariffs."""

from dataloaders.base import Loader
from domains.customers.contract import ContractRow, contracts_by_customer_ids, contracts_by_ids
from domains.customers.customer import CustomerRow, customers_by_ids, customers_by_user_ids
from domains.customers.pause import PauseRow, pauses_by_subscription_ids
from domains.customers.subscription import (
    SubscriptionRow,
    subscriptions_by_customer_ids,
    subscriptions_by_ids,
)
from domains.customers.tariff import TariffRow, tariffs_by_ids
from domains.customers.tariff_span import TariffSpanRow, spans_by_subscription_ids


class CustomersByIdLoader(Loader[int, CustomerRow | None]):
    fetch = staticmethod(customers_by_ids)


class CustomersByUserIdLoader(Loader[int, CustomerRow | None]):
    fetch = staticmethod(customers_by_user_ids)


class ContractsByIdLoader(Loader[int, ContractRow | None]):
    fetch = staticmethod(contracts_by_ids)


class ContractsByCustomerIdLoader(Loader[int, list[ContractRow]]):
    fetch = staticmethod(contracts_by_customer_ids)


class SubscriptionsByIdLoader(Loader[int, SubscriptionRow | None]):
    fetch = staticmethod(subscriptions_by_ids)


class SubscriptionsByCustomerIdLoader(Loader[int, list[SubscriptionRow]]):
    fetch = staticmethod(subscriptions_by_customer_ids)


class TariffsByIdLoader(Loader[int, TariffRow | None]):
    fetch = staticmethod(tariffs_by_ids)


class TariffSpansBySubscriptionIdLoader(Loader[int, list[TariffSpanRow]]):
    fetch = staticmethod(spans_by_subscription_ids)


class PausesBySubscriptionIdLoader(Loader[int, list[PauseRow]]):
    fetch = staticmethod(pauses_by_subscription_ids)
