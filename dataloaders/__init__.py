"""Per-request loaders: every customer and billing lookup goes through one of these."""

from functools import cached_property

from dataloaders.billing import (
    InvoicePagesByCustomerIdLoader,
    InvoicesByIdLoader,
    PaymentPagesByCustomerIdLoader,
    PaymentsByIdLoader,
    PaymentsByInvoiceIdLoader,
    TransactionsByIdLoader,
    TransactionsByPaymentIdLoader,
)
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
from domains.database import Database


class Loaders:
    """Built per request and only on first use, so a small query pays for few loaders."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @cached_property
    def users_by_id(self) -> UsersByIdLoader:
        return UsersByIdLoader(self.db)

    @cached_property
    def customers_by_id(self) -> CustomersByIdLoader:
        return CustomersByIdLoader(self.db)

    @cached_property
    def customers_by_user_id(self) -> CustomersByUserIdLoader:
        return CustomersByUserIdLoader(self.db)

    @cached_property
    def contracts_by_id(self) -> ContractsByIdLoader:
        return ContractsByIdLoader(self.db)

    @cached_property
    def contracts_by_customer_id(self) -> ContractsByCustomerIdLoader:
        return ContractsByCustomerIdLoader(self.db)

    @cached_property
    def subscriptions_by_id(self) -> SubscriptionsByIdLoader:
        return SubscriptionsByIdLoader(self.db)

    @cached_property
    def subscriptions_by_customer_id(self) -> SubscriptionsByCustomerIdLoader:
        return SubscriptionsByCustomerIdLoader(self.db)

    @cached_property
    def tariffs_by_id(self) -> TariffsByIdLoader:
        return TariffsByIdLoader(self.db)

    @cached_property
    def invoices_by_id(self) -> InvoicesByIdLoader:
        return InvoicesByIdLoader(self.db)

    @cached_property
    def invoice_pages_by_customer_id(self) -> InvoicePagesByCustomerIdLoader:
        return InvoicePagesByCustomerIdLoader(self.db)

    @cached_property
    def payments_by_id(self) -> PaymentsByIdLoader:
        return PaymentsByIdLoader(self.db)

    @cached_property
    def payments_by_invoice_id(self) -> PaymentsByInvoiceIdLoader:
        return PaymentsByInvoiceIdLoader(self.db)

    @cached_property
    def payment_pages_by_customer_id(self) -> PaymentPagesByCustomerIdLoader:
        return PaymentPagesByCustomerIdLoader(self.db)

    @cached_property
    def transactions_by_id(self) -> TransactionsByIdLoader:
        return TransactionsByIdLoader(self.db)

    @cached_property
    def transactions_by_payment_id(self) -> TransactionsByPaymentIdLoader:
        return TransactionsByPaymentIdLoader(self.db)
