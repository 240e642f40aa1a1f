"""Billing loaders: invoices and their lines, payments, ledger transactions, billing runs."""

from dataloaders import Loaders
from dataloaders.base import Loader, PageLoader
from dataloaders.customers import CustomersByIdLoader
from domains.billing.billing_run import BillingRunRow, billing_runs_by_ids
from domains.billing.invoice import InvoiceRow, invoice_pages_by_customer_ids, invoices_by_ids
from domains.billing.invoice_line import InvoiceLineRow, lines_by_invoice_ids
from domains.billing.pay_invoice import PaymentResult
from domains.billing.payment import (
    PaymentRow,
    payment_pages_by_customer_ids,
    payments_by_ids,
    payments_by_invoice_ids,
)
from domains.billing.refund_payment import RefundResult
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


class InvoiceLinesByInvoiceIdLoader(Loader[int, list[InvoiceLineRow]]):
    fetch = staticmethod(lines_by_invoice_ids)


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


class BillingRunsByIdLoader(Loader[int, BillingRunRow | None]):
    fetch = staticmethod(billing_runs_by_ids)


def prime_outcome(loaders: Loaders, outcome: PaymentResult | RefundResult) -> None:
    """A payment's or refund's answer, from the rows its transaction committed (when it
    has them: not a replay's, nor a card payment's, whose rows change afterwards)."""
    if outcome.payment is not None:
        loaders.of(PaymentsByIdLoader).prime(outcome.payment.id, outcome.payment)
    if outcome.invoice is not None:
        loaders.of(InvoicesByIdLoader).prime(outcome.invoice.id, outcome.invoice)
    if outcome.customer is not None:
        loaders.of(CustomersByIdLoader).prime(outcome.customer.id, outcome.customer)
