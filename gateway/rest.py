"""The REST facade for the seed's flows, served by the same domain code as GraphQL."""

import asyncio
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from domains.billing.invoice import INVOICE_ORDER, InvoiceFilter, invoice_pages_by_customer_ids
from domains.billing.models import InvoiceStatus
from domains.customers.customer import customers_by_ids
from domains.errors import DomainError, Forbidden, InvalidInput, NotFound
from domains.identity.login import login
from domains.identity.viewer import Viewer, require_viewer
from gateway.errors import rest_error_response
from gateway.services import Services
from resolvers.relay import connection_from_page, to_global_id, window_from_arguments

_HTTP_STATUS = {
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
}


def _error(error: DomainError) -> Response:
    status = _HTTP_STATUS.get(error.code, 400)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return rest_error_response(status, error.code, error.message, headers)


async def _json_object(request: Request) -> dict[str, Any]:
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


async def auth_login(request: Request) -> Response:
    services: Services = request.app.state.services
    try:
        body = await _json_object(request)
        email, password = body.get("email"), body.get("password")
        if not isinstance(email, str) or not isinstance(password, str):
            raise InvalidInput("'email' and 'password' are required strings")
        result = await login(services.db, services.tokens, email=email, password=password)
    except DomainError as error:
        if error.code == "UNAUTHENTICATED":
            services.metrics.count_login(success=False)
        return _error(error)
    services.metrics.count_login(success=True)
    return JSONResponse(
        {
            "access_token": result.access_token,
            "token_type": "Bearer",
            "expires_at": result.expires_at.isoformat(),
            "user": {
                "id": to_global_id("User", result.user.id),
                "email": result.user.email,
                "role": result.user.role.value,
                "customer_id": to_global_id("Customer", result.customer_id)
                if result.customer_id is not None
                else None,
            },
        }
    )


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
        }
    )
