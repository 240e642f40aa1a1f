"""REST routes of billing: the seed's flows 2.2 (invoices with the profile) and 2.3 (paying),
and the acquirer's notifications of card payment results."""

import asyncio
from datetime import date
from decimal import Decimal
from typing import Annotated

from pydantic import AwareDatetime, BeforeValidator, Field

from dataloaders.billing import (
    InvoicePagesByCustomerIdLoader,
    InvoicesByIdLoader,
    PaymentsByIdLoader,
    prime_outcome,
)
from dataloaders.customers import CustomersByIdLoader
from domains.billing.errors import PromisedPaymentNotAllowed
from domains.billing.invoice import INVOICE_ORDER, InvoiceFilter
from domains.billing.models import (
    InvoiceStatus,
    PaymentMethod,
    PaymentStatus,
    PromisedPaymentStatus,
)
from domains.billing.pay_invoice import pay_invoice
from domains.billing.promised_payment import activate_promised_payment
from domains.billing.webhook import parse_notice, settle, signature_valid
from domains.clock import utcnow
from domains.errors import Forbidden, NotFound, Unauthenticated
from domains.keyset import MAX_PAGE_SIZE
from resolvers.relay import connection_from_page, pk_of, to_global_id, window_from_arguments
from resolvers.rest import (
    Answer,
    Body,
    PageInfo,
    Params,
    RestAnswer,
    RestCall,
    RestRoute,
    parse,
)

# A decimal string, as money travels (never a JSON number, which clients round).
DecimalString = Annotated[
    str,
    Field(pattern=r"^-?[0-9]{1,20}(\.[0-9]{1,20})?$", examples=["120.50"]),
]


def _comma_list(raw: object) -> object:
    """`status=issued,overdue` as a list (each part must then be a status)."""
    return raw.split(",") if isinstance(raw, str) else raw


class InvoicesQuery(Params):
    status: (
        Annotated[list[InvoiceStatus], BeforeValidator(_comma_list), Field(min_length=1)] | None
    ) = Field(None, description="comma-separated statuses; any of them")
    first: int | None = Field(None, ge=0, le=MAX_PAGE_SIZE, description="page size (20)")
    after: str | None = Field(None, max_length=512, description="the end_cursor of a page")


class Money(Answer):
    amount: Decimal
    currency: str


class CustomerProfile(Answer):
    id: str
    contract_num: str
    full_name: str
    balance: Money


class Invoice(Answer):
    id: str
    number: str
    status: InvoiceStatus
    period_start: date
    period_end: date
    amount: Money
    issued_at: AwareDatetime | None
    due_date: date | None


class InvoicesAnswer(Answer):
    customer: CustomerProfile
    invoices: list[Invoice]
    page_info: PageInfo


class PayRequest(Body):
    invoice_id: str = Field(max_length=512, description="the invoice's global id")
    method: PaymentMethod
    amount: DecimalString | None = Field(
        None, description="what to pay; all that is due if omitted"
    )


class Payment(Answer):
    id: str
    amount: Money
    method: PaymentMethod
    status: PaymentStatus
    created_at: AwareDatetime
    confirmation_url: str | None = Field(description="where the payer confirms a card payment")


class InvoiceRef(Answer):
    id: str
    number: str
    status: InvoiceStatus


class Balance(Answer):
    id: str
    balance: Money


class PayAnswer(Answer):
    payment: Payment
    invoice: InvoiceRef
    customer: Balance


async def billing_invoices(call: RestCall) -> RestAnswer:
    """The viewer's invoices with the customer profile, a page at a time."""
    query: InvoicesQuery = call.params
    context = call.context
    customer_id = context.signed_in.customer_id
    if customer_id is None:
        raise Forbidden("staff accounts have no invoices")
    invoice_filter = InvoiceFilter(frozenset(query.status or ()))
    window = window_from_arguments(INVOICE_ORDER, query.first, query.after)
    # What the same read costs through GraphQL: the profile, and ten fields per invoice.
    await call.charge("query", 1 + 10 * window.limit)
    # Read concurrently, each loader on its own connection.
    customer, page = await asyncio.gather(
        context.loaders.of(CustomersByIdLoader).load(customer_id),
        context.loaders.of(InvoicePagesByCustomerIdLoader).load(
            (customer_id, invoice_filter, window)
        ),
    )
    if customer is None:
        raise NotFound("customer")
    connection = connection_from_page(page, INVOICE_ORDER)
    return RestAnswer(
        InvoicesAnswer(
            customer=CustomerProfile(
                id=to_global_id("Customer", customer.id),
                contract_num=customer.contract_num,
                full_name=customer.full_name,
                balance=Money(amount=customer.balance, currency=customer.currency),
            ),
            invoices=[
                Invoice(
                    id=to_global_id("Invoice", row.id),
                    number=row.number,
                    status=row.status,
                    period_start=row.period_start,
                    period_end=row.period_end,
                    amount=Money(amount=row.amount, currency=row.currency),
                    issued_at=row.issued_at,
                    due_date=row.due_date,
                )
                for row in page.rows
            ],
            page_info=PageInfo(
                has_next_page=connection.page_info.has_next_page,
                end_cursor=connection.page_info.end_cursor,
            ),
        )
    )


async def billing_pay(call: RestCall) -> RestAnswer:
    """Pay an invoice; `Idempotency-Key` makes retries safe.

    201 with the payment, invoice and balance; a retry with the same key and body answers
    200 with the same payment. Errors: 400 malformed, 404 not the viewer's invoice,
    409 IDEMPOTENCY_KEY_REUSED, 422 refused by the billing rules.
    """
    request: PayRequest = call.body
    context = call.context
    invoice_id = pk_of(request.invoice_id, "Invoice")
    await call.charge("mutation", 1)
    result = await pay_invoice(
        context.db,
        context.signed_in,
        invoice_id=invoice_id,
        method=request.method,
        amount=Decimal(request.amount) if request.amount is not None else None,
        idempotency_key=call.idempotency_key or "",
        acquiring=context.acquiring,
    )
    prime_outcome(context.loaders, result)
    payment, invoice, customer = await asyncio.gather(
        context.loaders.of(PaymentsByIdLoader).load(result.payment_id),
        context.loaders.of(InvoicesByIdLoader).load(result.invoice_id),
        context.loaders.of(CustomersByIdLoader).load(result.customer_id),
    )
    return RestAnswer(
        PayAnswer(
            payment=Payment(
                id=to_global_id("Payment", payment.id),
                amount=Money(amount=payment.amount, currency=payment.currency),
                method=payment.method,
                status=payment.status,
                created_at=payment.created_at,
                confirmation_url=payment.confirmation_url,
            ),
            invoice=InvoiceRef(
                id=to_global_id("Invoice", invoice.id), number=invoice.number, status=invoice.status
            ),
            customer=Balance(
                id=to_global_id("Customer", customer.id),
                balance=Money(amount=customer.balance, currency=customer.currency),
            ),
        ),
        status=200 if result.replayed else 201,
        headers={"Cache-Control": "no-store"},
    )


class PromisedPaymentRequest(Body):
    amount: DecimalString = Field(description="the credit asked for, at most the maximum")
    customer_id: str | None = Field(
        None, max_length=512, description="staff: the customer's global id, acting for them"
    )


class PromisedPayment(Answer):
    amount: Money
    outstanding: Money
    status: PromisedPaymentStatus
    created_at: AwareDatetime
    expires_at: AwareDatetime


class PromisedPaymentAnswer(Answer):
    promised_payment: PromisedPayment
    customer: Balance


async def billing_promised_payment(call: RestCall) -> RestAnswer:
    """Take a promised payment (activatePromisedPayment): 201 with it and the balance after.
    Errors: 400 malformed, 403 not a customer or staff, 404 no such customer, 422 refused
    by the rules (INVALID_AMOUNT, PROMISED_PAYMENT_ACTIVE, PROMISED_PAYMENT_LIMIT,
    PROMISED_PAYMENT_NOT_ALLOWED)."""
    request: PromisedPaymentRequest = call.body
    context = call.context
    if context.promise_terms is None:
        raise PromisedPaymentNotAllowed("promised payments are not offered here")
    customer_id = None if request.customer_id is None else pk_of(request.customer_id, "Customer")
    await call.charge("mutation", 1)
    result = await activate_promised_payment(
        context.db,
        context.signed_in,
        amount=Decimal(request.amount),
        terms=context.promise_terms,
        customer_id=customer_id,
        clock=context.clock,
    )
    promise = result.promise
    customer = await context.loaders.of(CustomersByIdLoader).load(promise.customer_id)
    if customer is None:
        raise NotFound("customer")
    return RestAnswer(
        PromisedPaymentAnswer(
            promised_payment=PromisedPayment(
                amount=Money(amount=promise.amount, currency=promise.currency),
                outstanding=Money(amount=promise.outstanding, currency=promise.currency),
                status=promise.status,
                created_at=promise.created_at,
                expires_at=promise.expires_at,
            ),
            customer=Balance(
                id=to_global_id("Customer", customer.id),
                balance=Money(amount=customer.balance, currency=customer.currency),
            ),
        ),
        status=201,
        headers={"Cache-Control": "no-store"},
    )


class NoticeAmount(Body):
    value: DecimalString
    currency: str


class NoticeObject(Body):
    id: str
    amount: NoticeAmount


class ProviderNotification(Body):
    """The acquirer's notification of a payment's result (YooKassa's shape)."""

    id: str
    type: str = Field(examples=["payment.succeeded", "payment.canceled"])
    object: NoticeObject


class WebhookAnswer(Answer):
    status: str = Field(description="ok, or duplicate for an event already handled")


async def payment_webhook(call: RestCall) -> RestAnswer:
    """The provider reports a payment's result, authenticated by the signature alone:
    HMAC-SHA256 over `<Webhook-Timestamp>.<body>`, compared in constant time, the timestamp
    within the tolerance; otherwise 401 and nothing happens. A handled event answers 200,
    and so does its redelivery (without effect), so the provider stops retrying."""
    acquiring = call.context.acquiring
    provider = call.path["provider"]
    if acquiring is None or acquiring.webhook_secret is None or provider != acquiring.provider.name:
        raise NotFound("payment provider")
    if not signature_valid(
        acquiring.webhook_secret,
        call.headers.get("webhook-timestamp", ""),
        call.headers.get("webhook-signature", ""),
        call.raw_body,
        now=utcnow(),
        tolerance=acquiring.webhook_tolerance,
    ):
        raise Unauthenticated("bad webhook signature, or its timestamp is too old")
    notice = parse(ProviderNotification, call.raw_body, json=True)
    applied = await settle(call.context.db, provider, parse_notice(notice.model_dump()))
    return RestAnswer(WebhookAnswer(status="ok" if applied else "duplicate"))


ROUTES = (
    RestRoute(
        "GET",
        "/billing/invoices",
        billing_invoices,
        answers={200: InvoicesAnswer},
        params=InvoicesQuery,
        errors=("FORBIDDEN", "NOT_FOUND"),
    ),
    RestRoute(
        "POST",
        "/billing/pay",
        billing_pay,
        answers={200: PayAnswer, 201: PayAnswer},
        body=PayRequest,
        idempotent=True,
        errors=(
            "FORBIDDEN",
            "NOT_FOUND",
            "IDEMPOTENCY_KEY_REUSED",
            "INVOICE_NOT_PAYABLE",
            "INVALID_AMOUNT",
            "INSUFFICIENT_FUNDS",
            "PAYMENT_METHOD_UNAVAILABLE",
            "PAYMENT_PROVIDER_UNAVAILABLE",
        ),
    ),
    RestRoute(
        "POST",
        "/billing/promised-payment",
        billing_promised_payment,
        answers={201: PromisedPaymentAnswer},
        body=PromisedPaymentRequest,
        errors=(
            "FORBIDDEN",
            "NOT_FOUND",
            "INVALID_AMOUNT",
            "PROMISED_PAYMENT_ACTIVE",
            "PROMISED_PAYMENT_LIMIT",
            "PROMISED_PAYMENT_NOT_ALLOWED",
        ),
    ),
    RestRoute(
        "POST",
        "/webhooks/payments/{provider}",
        payment_webhook,
        answers={200: WebhookAnswer},
        body=ProviderNotification,
        signed_body=True,
        signed_in=False,
        errors=("NOT_FOUND",),
    ),
)

# A well-formed request the billing rules refuse is 422; a key already used for another
# payment conflicts (409); malformed input stays 400.
ERROR_STATUS = {
    "IDEMPOTENCY_KEY_REUSED": 409,
    "INVOICE_NOT_PAYABLE": 422,
    "INVALID_AMOUNT": 422,
    "INSUFFICIENT_FUNDS": 422,
    "PAYMENT_METHOD_UNAVAILABLE": 422,
    "PAYMENT_PROVIDER_UNAVAILABLE": 503,
    "PROMISED_PAYMENT_ACTIVE": 422,
    "PROMISED_PAYMENT_LIMIT": 422,
    "PROMISED_PAYMENT_NOT_ALLOWED": 422,
}
