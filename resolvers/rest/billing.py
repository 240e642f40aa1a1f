"""REST routes of billing: the seed's flows 2.2 (invoices with the profile) and 2.3 (paying),
and the acquirer's notifications of card payment results."""

import asyncio
import json
from decimal import Decimal, InvalidOperation
from typing import Any

from dataloaders.billing import (
    InvoicePagesByCustomerIdLoader,
    InvoicesByIdLoader,
    PaymentsByIdLoader,
    prime_outcome,
)
from dataloaders.customers import CustomersByIdLoader
from domains.billing.invoice import INVOICE_ORDER, InvoiceFilter
from domains.billing.models import InvoiceStatus, PaymentMethod
from domains.billing.pay_invoice import pay_invoice
from domains.billing.webhook import parse_notice, settle, signature_valid
from domains.clock import utcnow
from domains.errors import Forbidden, InvalidInput, NotFound, Unauthenticated
from resolvers.relay import connection_from_page, pk_of, to_global_id, window_from_arguments
from resolvers.rest import RestAnswer, RestCall, RestRoute

_AMOUNT = "'amount' is a decimal string, e.g. \"120.50\""


def _money(amount: Any, currency: str) -> dict[str, str]:
    return {"amount": str(amount), "currency": currency}


def _invoice_filter(raw: str | None) -> InvoiceFilter:
    if not raw:
        return InvoiceFilter()
    try:
        return InvoiceFilter(frozenset(InvoiceStatus(s.strip().lower()) for s in raw.split(",")))
    except ValueError:
        allowed = ", ".join(s.value for s in InvoiceStatus)
        raise InvalidInput(f"status must be a comma-separated list of: {allowed}") from None


def _page_size(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput("'first' must be an integer") from None


async def billing_invoices(call: RestCall) -> RestAnswer:
    """Invoices and the customer profile, read concurrently (each loader its connection)."""
    context = call.context
    customer_id = context.signed_in.customer_id
    if customer_id is None:
        raise Forbidden("staff accounts have no invoices")
    invoice_filter = _invoice_filter(call.query.get("status"))
    window = window_from_arguments(
        INVOICE_ORDER, _page_size(call.query.get("first")), call.query.get("after"), None, None
    )
    # What the same read costs through GraphQL: the profile, and ten fields per invoice.
    await call.charge("query", 1 + 10 * window.limit)
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
        {
            "customer": {
                "id": to_global_id("Customer", customer.id),
                "contract_num": customer.contract_num,
                "full_name": customer.full_name,
                "balance": _money(customer.balance, customer.currency),
            },
            "invoices": [
                {
                    "id": to_global_id("Invoice", row.id),
                    "number": row.number,
                    "status": row.status.value,
                    "period_start": row.period_start.isoformat(),
                    "period_end": row.period_end.isoformat(),
                    "amount": _money(row.amount, row.currency),
                    "issued_at": row.issued_at.isoformat() if row.issued_at else None,
                    "due_date": row.due_date.isoformat() if row.due_date else None,
                }
                for row in page.rows
            ],
            "page_info": {
                "has_next_page": connection.page_info.has_next_page,
                "end_cursor": connection.page_info.end_cursor,
            },
        }
    )


def _pay_arguments(body: Any) -> tuple[int, PaymentMethod, Decimal | None]:
    invoice_id, method, amount = body.get("invoice_id"), body.get("method"), body.get("amount")
    if not isinstance(invoice_id, str):
        raise InvalidInput("'invoice_id' is a required string (the invoice's global id)")
    try:
        payment_method = PaymentMethod(str(method).lower())
    except ValueError:
        allowed = ", ".join(m.value for m in PaymentMethod)
        raise InvalidInput(f"'method' is one of: {allowed}") from None
    if amount is None:
        return pk_of(invoice_id, "Invoice"), payment_method, None
    if not isinstance(amount, str):
        raise InvalidInput(_AMOUNT)
    try:
        return pk_of(invoice_id, "Invoice"), payment_method, Decimal(amount)
    except InvalidOperation:
        raise InvalidInput(_AMOUNT) from None


async def billing_pay(call: RestCall) -> RestAnswer:
    """Pay an invoice; `Idempotency-Key` makes retries safe.

    201 with the payment, invoice and balance; a retry with the same key and body answers
    200 with the same payment. Errors: 400 malformed, 404 not the viewer's invoice,
    409 IDEMPOTENCY_KEY_REUSED, 422 refused by the billing rules.
    """
    context = call.context
    invoice_id, method, amount = _pay_arguments(call.body)
    await call.charge("mutation", 1)
    result = await pay_invoice(
        context.db,
        context.signed_in,
        invoice_id=invoice_id,
        method=method,
        amount=amount,
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
        {
            "payment": {
                "id": to_global_id("Payment", payment.id),
                "amount": _money(payment.amount, payment.currency),
                "method": payment.method.value,
                "status": payment.status.value,
                "created_at": payment.created_at.isoformat(),
                "confirmation_url": payment.confirmation_url,
            },
            "invoice": {
                "id": to_global_id("Invoice", invoice.id),
                "number": invoice.number,
                "status": invoice.status.value,
            },
            "customer": {
                "id": to_global_id("Customer", customer.id),
                "balance": _money(customer.balance, customer.currency),
            },
        },
        status=200 if result.replayed else 201,
        headers={"Cache-Control": "no-store"},
    )


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
    try:
        payload = json.loads(call.raw_body)
    except ValueError:
        raise InvalidInput("the notification is not JSON") from None
    applied = await settle(call.context.db, provider, parse_notice(payload))
    return RestAnswer({"status": "ok" if applied else "duplicate"})


ROUTES = (
    RestRoute("GET", "/billing/invoices", billing_invoices),
    RestRoute("POST", "/billing/pay", billing_pay, idempotent=True),
    RestRoute(
        "POST", "/webhooks/payments/{provider}", payment_webhook, signed_in=False, json_body=False
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
}
