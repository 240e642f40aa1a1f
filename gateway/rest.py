"""The REST facade for the seed's flows, served by the same domain code as GraphQL."""

import asyncio
import json
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from domains.billing.invoice import (
    INVOICE_ORDER,
    InvoiceFilter,
    invoice_pages_by_customer_ids,
    invoices_by_ids,
)
from domains.billing.models import InvoiceStatus, PaymentMethod
from domains.billing.pay_invoice import pay_invoice
from domains.billing.payment import payments_by_ids
from domains.clock import utcnow
from domains.customers.customer import customers_by_ids
from domains.errors import DomainError, Forbidden, InvalidInput, NotFound, RateLimited
from domains.identity.credentials import Credentials
from domains.identity.login import login
from domains.identity.logout import logout
from domains.identity.refresh import refresh
from domains.identity.session import Client
from domains.identity.viewer import Viewer, require_viewer
from domains.limits import Decision, LimiterUnavailable
from gateway.errors import rest_error_response
from gateway.ratelimit import (
    LIMITER_DOWN_MESSAGE,
    SERVICE_UNAVAILABLE,
    Kind,
    OverBudget,
    rate_limit_headers,
)
from gateway.services import Services
from resolvers.relay import connection_from_page, pk_of, to_global_id, window_from_arguments

_HTTP_STATUS = {
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "RATE_LIMITED": 429,
    SERVICE_UNAVAILABLE: 503,
    # Payments: a well-formed request the billing rules refuse is 422; a key already used
    # for another payment conflicts (409); malformed input stays 400.
    "IDEMPOTENCY_KEY_REUSED": 409,
    "INVOICE_NOT_PAYABLE": 422,
    "INVALID_AMOUNT": 422,
    "INSUFFICIENT_FUNDS": 422,
    "PAYMENT_METHOD_UNAVAILABLE": 422,
    "PAYMENT_PROVIDER_UNAVAILABLE": 503,
}
# The web portal's refresh token, out of reach of scripts (`__Host-`: this host, path /, TLS).
REFRESH_COOKIE = "__Host-kabinet_refresh"


def _error(error: DomainError) -> Response:
    status = _HTTP_STATUS.get(error.code, 400)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(error, OverBudget):
        headers = rate_limit_headers(error.decision)
    elif isinstance(error, RateLimited):
        headers = {"Retry-After": str(error.retry_after)}
    return rest_error_response(status, error.code, error.message, headers)


async def _spend(
    services: Services, request: Request, viewer: Viewer, kind: Kind, cost: int
) -> Decision:
    """Charges the caller's budget as GraphQL would; over it, raises OverBudget (429), and
    with the limiter down (policy "closed") a SERVICE_UNAVAILABLE error (503)."""
    try:
        decision = await services.budgets.charge(
            kind, cost, user_id=viewer.user_id, ip=_client(request).ip_address
        )
    except LimiterUnavailable:
        raise DomainError(LIMITER_DOWN_MESSAGE, code=SERVICE_UNAVAILABLE) from None
    if not decision.allowed:
        raise OverBudget(decision)
    return decision


async def _json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object. Demanding JSON is also the CSRF guard of the cookie
    routes: a cross-site form cannot send it without a CORS preflight."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise InvalidInput("send a JSON body with Content-Type: application/json")
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise InvalidInput("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidInput("request body must be a JSON object")
    return body


def _money(amount: Any, currency: str) -> dict[str, str]:
    return {"amount": str(amount), "currency": currency}


def _client(request: Request, device: Any = None) -> Client:
    if device is not None and not isinstance(device, str):
        raise InvalidInput("'device' must be a string")
    ip_address = request.client.host if request.client is not None else None
    return Client(ip_address, request.headers.get("user-agent", ""), device)


def _credentials(services: Services, credentials: Credentials) -> Response:
    user = credentials.user
    response = JSONResponse(
        {
            "access_token": credentials.access_token,
            "token_type": "Bearer",
            "expires_at": credentials.expires_at.isoformat(),
            "refresh_token": credentials.refresh_token,
            "refresh_expires_at": credentials.refresh_expires_at.isoformat(),
            "session_id": credentials.session_id,
            "user": {
                "id": to_global_id("User", user.id),
                "email": user.email,
                "role": user.role.value,
                "customer_id": to_global_id("Customer", credentials.customer_id)
                if credentials.customer_id is not None
                else None,
            },
        },
        headers={"Cache-Control": "no-store"},
    )
    if services.settings.refresh_cookie:
        response.set_cookie(
            REFRESH_COOKIE,
            credentials.refresh_token,
            max_age=int((credentials.refresh_expires_at - utcnow()).total_seconds()),
            path="/",
            secure=True,
            httponly=True,
            samesite="strict",
        )
    return response


async def auth_login(request: Request) -> Response:
    services: Services = request.app.state.services
    try:
        body = await _json_object(request)
        email, password = body.get("email"), body.get("password")
        if not isinstance(email, str) or not isinstance(password, str):
            raise InvalidInput("'email' and 'password' are required strings")
        credentials = await login(
            services.auth,
            email=email,
            password=password,
            client=_client(request, body.get("device")),
        )
    except DomainError as error:
        if error.code == "UNAUTHENTICATED":
            services.metrics.count_login(success=False)
        return _error(error)
    services.metrics.count_login(success=True)
    return _credentials(services, credentials)


async def auth_refresh(request: Request) -> Response:
    """The refresh token from the body, or else (if enabled) from the cookie."""
    services: Services = request.app.state.services
    try:
        body = await _json_object(request)
        token = body.get("refresh_token")
        if token is None and services.settings.refresh_cookie:
            token = request.cookies.get(REFRESH_COOKIE)
        if not isinstance(token, str):
            raise InvalidInput("'refresh_token' is a required string")
        credentials = await refresh(services.auth, token=token)
    except DomainError as error:
        return _error(error)
    return _credentials(services, credentials)


async def auth_logout(request: Request) -> Response:
    """Ends the session of the bearer's access token."""
    services: Services = request.app.state.services
    try:
        await logout(services.auth, require_viewer(request.state.viewer))
    except DomainError as error:
        return _error(error)
    response = Response(status_code=204)
    if services.settings.refresh_cookie:
        response.delete_cookie(
            REFRESH_COOKIE, path="/", secure=True, httponly=True, samesite="strict"
        )
    return response


def _invoice_filter(request: Request) -> InvoiceFilter:
    raw = request.query_params.get("status")
    if not raw:
        return InvoiceFilter()
    try:
        return InvoiceFilter(frozenset(InvoiceStatus(s.strip().lower()) for s in raw.split(",")))
    except ValueError:
        allowed = ", ".join(s.value for s in InvoiceStatus)
        raise InvalidInput(f"status must be a comma-separated list of: {allowed}") from None


def _page_size(request: Request) -> int | None:
    raw = request.query_params.get("first")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput("'first' must be an integer") from None


async def billing_invoices(request: Request) -> Response:
    """The seed's flow 2.2: invoices and the customer profile, read concurrently."""
    services: Services = request.app.state.services
    try:
        viewer: Viewer = require_viewer(request.state.viewer)
        if viewer.customer_id is None:
            raise Forbidden("staff accounts have no invoices")
        customer_id = viewer.customer_id
        invoice_filter = _invoice_filter(request)
        window = window_from_arguments(
            INVOICE_ORDER, _page_size(request), request.query_params.get("after"), None, None
        )

        # What the same read costs through GraphQL: the profile, and ten fields per invoice.
        decision = await _spend(services, request, viewer, "query", 1 + 10 * window.limit)

        async def read_customer() -> Any:
            async with services.db.read() as conn:
                return (await customers_by_ids(conn, [customer_id])).get(customer_id)

        async def read_invoices() -> Any:
            async with services.db.read() as conn:
                pages = await invoice_pages_by_customer_ids(
                    conn, [customer_id], invoice_filter, window
                )
                return pages[customer_id]

        customer, page = await asyncio.gather(read_customer(), read_invoices())
        if customer is None:
            raise NotFound("customer")
    except DomainError as error:
        return _error(error)
    connection = connection_from_page(page, INVOICE_ORDER)
    return JSONResponse(
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
        },
        headers=rate_limit_headers(decision),
    )


def _pay_arguments(body: dict[str, Any]) -> tuple[int, PaymentMethod, Decimal | None]:
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
        raise InvalidInput("'amount' is a decimal string, e.g. \"120.50\"")
    try:
        return pk_of(invoice_id, "Invoice"), payment_method, Decimal(amount)
    except InvalidOperation:
        raise InvalidInput("'amount' is a decimal string, e.g. \"120.50\"") from None


async def billing_pay(request: Request) -> Response:
    """The seed's flow 2.3: pay an invoice; `Idempotency-Key` makes retries safe.

    201 with the payment, invoice and balance; a retry with the same key and body answers
    200 with the same payment. Errors: 400 malformed, 404 not the viewer's invoice,
    409 IDEMPOTENCY_KEY_REUSED, 422 refused by the billing rules.
    """
    services: Services = request.app.state.services
    try:
        viewer: Viewer = require_viewer(request.state.viewer)
        key = request.headers.get("idempotency-key")
        if not key:
            raise InvalidInput("send an Idempotency-Key header (e.g. a UUID) with every payment")
        invoice_id, method, amount = _pay_arguments(await _json_object(request))
        decision = await _spend(services, request, viewer, "mutation", 1)
        result = await pay_invoice(
            services.db,
            viewer,
            invoice_id=invoice_id,
            method=method,
            amount=amount,
            idempotency_key=key,
            acquiring=services.acquiring,
        )
    except DomainError as error:
        return _error(error)
    async with services.db.read() as conn:
        payment = (await payments_by_ids(conn, [result.payment_id]))[result.payment_id]
        invoice = (await invoices_by_ids(conn, [result.invoice_id]))[result.invoice_id]
        customer = (await customers_by_ids(conn, [result.customer_id]))[result.customer_id]
    return JSONResponse(
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
        status_code=200 if result.replayed else 201,
        headers={**rate_limit_headers(decision), "Cache-Control": "no-store"},
    )
