"""Billing refusals, each with the stable code API clients branch on."""

from domains.errors import DomainError


class InvoiceNotPayable(DomainError):
    """Only issued and overdue invoices take payments (not draft, paid or void)."""

    code = "INVOICE_NOT_PAYABLE"


class InvalidAmount(DomainError):
    """Not positive, more than two decimals, or more than is due or refundable."""

    code = "INVALID_AMOUNT"


class InsufficientFunds(DomainError):
    code = "INSUFFICIENT_FUNDS"


class PaymentMethodUnavailable(DomainError):
    """CARD goes through a payment provider, and none is configured here."""

    code = "PAYMENT_METHOD_UNAVAILABLE"


class IdempotencyKeyReused(DomainError):
    """The key already served a request with other parameters."""

    code = "IDEMPOTENCY_KEY_REUSED"


class PaymentNotRefundable(DomainError):
    """Only a succeeded payment moved money that can go back."""

    code = "PAYMENT_NOT_REFUNDABLE"


class RefundExceedsPayment(DomainError):
    code = "REFUND_EXCEEDS_PAYMENT"


class ProviderUnavailable(DomainError):
    """The payment provider did not answer, or refused; the payment stays pending."""

    code = "PAYMENT_PROVIDER_UNAVAILABLE"


class BillingRunConflict(DomainError):
    """A subscription the run was billing was billed by another writer meanwhile."""

    code = "BILLING_RUN_CONFLICT"


class PromisedPaymentLimit(DomainError):
    """KABINET_PROMISED_PAYMENTS_PER_28_DAYS were already taken in the last 28 days."""

    code = "PROMISED_PAYMENT_LIMIT"


class PromisedPaymentActive(DomainError):
    """One is still running, or ran out and is not repaid yet."""

    code = "PROMISED_PAYMENT_ACTIVE"


class PromisedPaymentNotAllowed(DomainError):
    """Only a customer whose service is suspended, or whose balance does not cover what
    their invoices owe, needs the credit."""

    code = "PROMISED_PAYMENT_NOT_ALLOWED"


class InvoiceNotVoidable(DomainError):
    """Paid, already void, or with a payment still kept or pending: refund it first."""

    code = "INVOICE_NOT_VOIDABLE"
