"""The framework-free ceiling for bench/dashboard.py: the Dashboard query's work without GraphQL.

One plain Starlette route, `POST /dashboard`, does for the bearer of an access token what
`POST /graphql` does for `bench/dashboard.graphql`: it verifies the token with the same
TokenService, runs the same seven statements through the domain reads the loaders call (each
on its own pooled connection, in the loaders' order: user, customer, then contracts, tariffs,
subscriptions, the invoice page and its payments), and answers the same JSON, byte for byte
in content. Whatever the gateway spends beyond this is the price of the framework.

Configured by the `KABINET_*` variables the server reads (database URL, signing key, host,
port, log level); started by bench/dashboard.py as `python bench/ceiling.py`.
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import uvicorn
from sqlalchemy import event, text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from domains.billing.invoice import (
    INVOICE_ORDER,
    InvoiceFilter,
    InvoiceRow,
    invoice_pages_by_customer_ids,
)
from domains.billing.payment import PaymentRow, payments_by_invoice_ids
from domains.billing.settlement import amount_due
from domains.customers.contract import ContractRow, contracts_by_customer_ids
from domains.customers.customer import CustomerRow, customers_by_user_ids
from domains.customers.subscription import SubscriptionRow, subscriptions_by_customer_ids
from domains.customers.tariff import TariffRow, tariffs_by_ids
from domains.database import Database
from domains.errors import Unauthenticated
from domains.identity.tokens import AccessClaims, TokenService
from domains.identity.user import users_by_ids
from domains.keyset import Page, Window
from gateway.settings import Settings
from resolvers.relay import connection_from_page, to_global_id

T = TypeVar("T")

PATH = "/dashboard"
INVOICES_PER_PAGE = 12  # invoices(first: 12) in bench/dashboard.graphql


class Ceiling:
    """What the endpoint needs: a pool, the token verifier, and two counters for /metrics."""

    def __init__(self, settings: Settings) -> None:
        self.db = Database(settings.database_url, pool_size=settings.database_pool_size)
        self.tokens = TokenService(
            settings.signing_key_pem(),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            access_ttl=settings.access_token_ttl,
        )
        self.statements = 0
        self.requests: dict[int, int] = {}
        event.listen(self.db.engine.sync_engine, "before_cursor_execute", self._count_statement)

    def _count_statement(self, *_args: Any) -> None:
        self.statements += 1

    async def read(
        self, fetch: Callable[..., Awaitable[T]], keys: Sequence[Any], *arguments: Any
    ) -> T:
        """One domain read on its own pooled connection, as a loader's batch runs."""
        async with self.db.read() as conn:
            return await fetch(conn, keys, *arguments)

    def viewer(self, request: Request) -> AccessClaims:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("use 'Authorization: Bearer <access token>'")
        return self.tokens.verify_access_token(token.strip())

    async def dashboard(self, request: Request) -> Response:
        try:
            claims = self.viewer(request)
        except Unauthenticated as error:
            return self._respond(401, {"errors": [{"message": error.message}]})
        user = (await self.read(users_by_ids, [claims.user_id])).get(claims.user_id)
        if user is None:
            return self._respond(200, {"data": None, "errors": [{"message": "user not found"}]})
        customer = (await self.read(customers_by_user_ids, [user.id])).get(user.id)
        me = {
            "id": to_global_id("User", user.id),
            "email": user.email,
            "customer": None if customer is None else await self._customer(customer),
        }
        return self._respond(200, {"data": {"me": me}})

    async def _customer(self, customer: CustomerRow) -> dict[str, Any]:
        (contracts, tariffs), subscriptions, (page, payments) = await asyncio.gather(
            self._contracts(customer.id),
            self.read(subscriptions_by_customer_ids, [customer.id]),
            self._invoices(customer.id),
        )
        connection = connection_from_page(page, INVOICE_ORDER)
        return {
            "id": to_global_id("Customer", customer.id),
            "contractNum": customer.contract_num,
            "fullName": customer.full_name,
            "balance": _money(customer.balance, customer.currency),
            "contracts": [_contract(c, tariffs[c.tariff_id]) for c in contracts],
            "subscriptions": [_subscription(s) for s in subscriptions[customer.id]],
            "invoices": {
                "edges": [
                    {"cursor": edge.cursor, "node": _invoice(edge.node, payments[edge.node.id])}
                    for edge in connection.edges
                ],
                "pageInfo": {
                    "hasNextPage": connection.page_info.has_next_page,
                    "endCursor": connection.page_info.end_cursor,
                },
            },
        }

    async def _contracts(self, customer_id: int) -> tuple[list[ContractRow], dict[int, TariffRow]]:
        contracts = (await self.read(contracts_by_customer_ids, [customer_id]))[customer_id]
        tariff_ids = list(dict.fromkeys(c.tariff_id for c in contracts))
        tariffs = await self.read(tariffs_by_ids, tariff_ids) if tariff_ids else {}
        return contracts, tariffs

    async def _invoices(
        self, customer_id: int
    ) -> tuple[Page[InvoiceRow], dict[int, list[PaymentRow]]]:
        pages = await self.read(
            invoice_pages_by_customer_ids,
            [customer_id],
            InvoiceFilter(),
            Window(limit=INVOICES_PER_PAGE),
        )
        page = pages[customer_id]
        invoice_ids = [row.id for row in page.rows]
        payments = await self.read(payments_by_invoice_ids, invoice_ids) if invoice_ids else {}
        return page, payments

    def _respond(self, status: int, body: Any) -> Response:
        self.requests[status] = self.requests.get(status, 0) + 1
        return Response(
            json.dumps(body, separators=(",", ":")),
            status_code=status,
            media_type="application/json",
        )

    async def ready(self, _request: Request) -> Response:
        async with self.db.read() as conn:
            await conn.execute(text("SELECT 1"))
        return JSONResponse({"status": "ok"})

    async def metrics(self, _request: Request) -> Response:
        """The two series bench/dashboard.py reads, named as the gateway names them."""
        lines = [f"kabinet_db_statements_total {self.statements}"]
        lines += [
            f'kabinet_http_requests_total{{method="POST",route="{PATH}",status="{status}"}} {n}'
            for status, n in sorted(self.requests.items())
        ]
        return Response("\n".join(lines) + "\n", media_type="text/plain")


def _money(amount: Decimal, currency: str) -> dict[str, str]:
    return {"amount": str(amount), "currency": currency}


def _contract(contract: ContractRow, tariff: TariffRow) -> dict[str, Any]:
    return {
        "id": to_global_id("Contract", contract.id),
        "address": contract.address,
        "status": contract.status.name,
        "tariff": {
            "id": to_global_id("Tariff", tariff.id),
            "name": tariff.name,
            "downloadMbps": tariff.download_mbps,
            "uploadMbps": tariff.upload_mbps,
            "monthlyPrice": _money(tariff.monthly_price, tariff.currency),
        },
    }


def _subscription(subscription: SubscriptionRow) -> dict[str, Any]:
    return {
        "id": to_global_id("Subscription", subscription.id),
        "status": subscription.status.name,
        "startedAt": subscription.started_at.isoformat(),
    }


def _invoice(invoice: InvoiceRow, payments: list[PaymentRow]) -> dict[str, Any]:
    return {
        "id": to_global_id("Invoice", invoice.id),
        "number": invoice.number,
        "status": invoice.status.name,
        "periodStart": invoice.period_start.isoformat(),
        "periodEnd": invoice.period_end.isoformat(),
        "dueDate": invoice.due_date.isoformat() if invoice.due_date else None,
        "amount": _money(invoice.amount, invoice.currency),
        "amountDue": _money(amount_due(invoice, payments), invoice.currency),
        "payments": [_payment(p) for p in payments],
    }


def _payment(payment: PaymentRow) -> dict[str, Any]:
    return {
        "id": to_global_id("Payment", payment.id),
        "method": payment.method.name,
        "status": payment.status.name,
        "createdAt": payment.created_at.isoformat(),
        "amount": _money(payment.amount, payment.currency),
    }


def create_app(settings: Settings) -> Starlette:
    ceiling = Ceiling(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await ceiling.db.dispose()

    return Starlette(
        routes=[
            Route(PATH, ceiling.dashboard, methods=["POST"]),
            Route("/health/ready", ceiling.ready, methods=["GET"]),
            Route("/metrics", ceiling.metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    settings = Settings()
    # As `kabinet serve` runs the gateway: one worker, same protocol stack and options.
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        proxy_headers=True,
        server_header=False,
    )


if __name__ == "__main__":
    main()
