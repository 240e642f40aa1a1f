"""Billing loaders: invoices, payments and ledger transactions."""

from dataloaders import Loaders
from dataloaders.base import Loader, PageLoader
from dataloaders.customers import CustomersByIdLoader
from domains.billing.invoice import InvoiceRow, invoice_pages_by_customer_ids, invoices_by_ids
from domains.billing.pay_invoice import PaymentResult
from domains.billing.payment import (
    PaymentRow,
    payment_pages_by_customer_ids,
    payments_by_ids,
    payments_by_invoice_ids,
)
from domains.billing.transaction import (
    TransactionRow,
    transactions_by_ids,
    transactions_by_payment_ids,
)


class InvoicesByIdLoader(Loader[int, InvoiceRow | None]):
    fetch = staticmethod(invoices_by_ids)


class InvoicePagesByCustomerIdLoader(PageLoader):
    """Key: (customer_id, InvoiceFilter, Window)."""

    fetch = staticmethod(invoice_pages_by_customer_ids)


class PaymentsByIdLoader(Loader[int, PaymentRow | None]):
    fetch = staticmethod(payments_by_ids)


class PaymentsByInvoiceIdLoader(Loader[int, list[PaymentRow]]):
    fetch = staticmethod(payments_by_invoice_ids)


class PaymentPagesByCustomerIdLoader(PageLoader):
    """Key: (customer_id, Window)."""

    fetch = staticmethod(payment_pages_by_customer_ids)


class TransactionsByIdLoader(Loader[int, TransactionRow | None]):
    fetch = staticmethod(transactions_by_ids)


class TransactionsByPaymentIdLoader(Loader[int, list[TransactionRow]]):
    fetch = staticmethod(transactions_by_payment_ids)


def prime_payment(loaders: Loaders, result: PaymentResult) -> None:
    """A payment's answer, from the rows its transaction committed (when it has them)."""
    if result.payment is not None:
        loaders.of(PaymentsByIdLoader).prime(result.payment.id, result.payment)
    if result.invoice is not None:
        loaders.of(InvoicesByIdLoader).prime(result.invoice.id, result.invoice)
    if result.customer is not None:
        loaders.of(CustomersByIdLoader).prime(result.customer.id, result.customer)
