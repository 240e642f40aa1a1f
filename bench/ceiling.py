"""The floor Python can reach for bench/dashboard.py: each scenario's work on raw asyncpg.

One plain Starlette route, `POST /graphql`, answers the bench's two operations by their
`operationName` without parsing GraphQL: `Dashboard` (bench/dashboard.graphql) and
`StaffCustomers` (bench/staff_customers.graphql). It verifies the bearer token with the
gateway's TokenService, runs the gateway's statements (7 for the dashboard, 4 for the staff
list) as asyncpg prepared statements on its own pool, each on its own pooled connection in
the loaders' order, and builds the same JSON straight from the records. Whatever the gateway
spends beyond this is the price of its database layer and of GraphQL.

Configured by the `KABINET_*` variables the server reads (database URL, signing key, read
pool size, host, port, log level); started by bench/dashboard.py as `python bench/ceiling.py`.
"""

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from decimal import Decimal
from typing import Any

import asyncpg
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from domains.clock import SYSTEM_CLOCK
from domains.errors import Unauthenticated
from domains.identity.models import Role
from domains.identity.tokens import AccessClaims, TokenService
from domains.read_pool import ReadPool
from gateway.settings import Settings

PATH = "/graphql"
DASHBOARD_INVOICES = 12  # invoices(first: 12) in bench/dashboard.graphql
STAFF_CUSTOMERS = 50  # $first's default in bench/staff_customers.graphql
STAFF_INVOICES = 3  # invoices(first: 3) there
STAFF = frozenset({Role.OPERATOR, Role.ADMIN})

# The gateway's statements, with `= ANY($1)` for its expanded `IN (...)` so that one
# prepared statement serves any number of keys.
USERS = """
SELECT id, email, role, is_active, created_at FROM users WHERE id = ANY($1::bigint[])"""
CUSTOMERS_BY_USER = """
SELECT id, user_id, contract_num, full_name, phone, balance, currency, created_at
FROM customers WHERE user_id = ANY($1::bigint[])"""
CUSTOMER_PAGE = """
SELECT id, user_id, contract_num, full_name, phone, balance, currency, created_at
FROM customers ORDER BY id ASC LIMIT $1"""
CONTRACTS = """
SELECT id, customer_id, tariff_id, address, status, start_date, end_date
FROM contracts WHERE customer_id = ANY($1::bigint[]) ORDER BY start_date, id"""
TARIFFS = """
SELECT id, code, name, description, segment, monthly_price, currency, download_mbps,
       upload_mbps, is_active
FROM tariffs WHERE id = ANY($1::bigint[])"""
SUBSCRIPTIONS = """
SELECT id, customer_id, contract_id, tariff_id, status, started_at, ended_at
FROM subscriptions WHERE customer_id = ANY($1::bigint[]) ORDER BY started_at, id"""
INVOICE_PAGES = """
SELECT id, customer_id, subscription_id, number, period_start, period_end, amount, currency,
       status, issued_at, due_date, created_at
FROM (SELECT id, customer_id, subscription_id, number, period_start, period_end, amount,
             currency, status, issued_at, due_date, created_at, row_number() OVER (
          PARTITION BY customer_id ORDER BY period_start DESC, id DESC) AS rank
      FROM invoices WHERE customer_id = ANY($2::bigint[])) AS ranked
WHERE rank <= $1 ORDER BY customer_id, rank"""
PAYMENTS = """
SELECT id, invoice_id, customer_id, amount, currency, method, status, refunded_amount,
       created_at, confirmation_url
FROM payments WHERE invoice_id = ANY($1::bigint[]) ORDER BY created_at, id"""

ISSUED = frozenset({"issued", "overdue", "paid"})  # domains.billing.invoice_issue.ISSUED
SETTLED = frozenset({"succeeded", "refunded"})  # domains.billing.settlement.SETTLED
ZERO = Decimal("0.00")

Record = asyncpg.Record


class Failure(Exception):
    """A request the operation refuses: answered as a GraphQL error with its code."""

    def __init__(self, message: str, code: str, status: int = 200) -> None:
        super().__init__(message)
        self.message, self.code, self.status = message, code, status


class Ceiling:
    """What the endpoint needs: a pool, the token verifier, and two counters for /metrics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tokens = TokenService(
            settings.signing_key_pem(),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            access_ttl=settings.access_token_ttl,
            clock=SYSTEM_CLOCK,
        )
        self.pool: ReadPool | None = None
        self.statements = 0
        self.requests: dict[int, int] = {}

    async def open(self) -> None:
        dsn = self.settings.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
        # The gateway's read pool, as large (domains/read_pool.py): the cheapest checkout
        # there is, so the floor pays for its connections what the gateway's reads pay.
        self.pool = ReadPool(
            lambda: asyncpg.connect(dsn),
            self.settings.database_read_pool_size,
            self.settings.database_pool_timeout,
        )

    async def fetch(self, sql: str, *arguments: Any) -> list[Record]:
        """One statement on its own pooled connection, as a loader's batch runs."""
        assert self.pool is not None
        self.statements += 1
        conn = await self.pool.acquire()
        try:
            return await conn.fetch(sql, *arguments)
        finally:
            self.pool.release(conn)

    async def graphql(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
            claims = self.viewer(request)
            if body.get("operationName") == "Dashboard":
                data = await self.dashboard(claims)
            elif body.get("operationName") == "StaffCustomers":
                first = (body.get("variables") or {}).get("first", STAFF_CUSTOMERS)
                data = await self.staff_customers(claims, first)
            else:
                raise Failure("only Dashboard and StaffCustomers", "BAD_REQUEST", 400)
        except Failure as failure:
            error = {"message": failure.message, "extensions": {"code": failure.code}}
            return self._respond(failure.status, {"data": None, "errors": [error]})
        return self._respond(200, {"data": data})

    def viewer(self, request: Request) -> AccessClaims:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        try:
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("use 'Authorization: Bearer <access token>'")
            return self.tokens.verify_access_token(token.strip())
        except Unauthenticated as error:
            raise Failure(error.message, "UNAUTHENTICATED", 401) from error

    async def dashboard(self, claims: AccessClaims) -> dict[str, Any]:
        users = await self.fetch(USERS, [claims.user_id])
        if not users:
            raise Failure("user not found", "NOT_FOUND")
        user = users[0]
        customers = await self.fetch(CUSTOMERS_BY_USER, [user["id"]])
        me = {
            "id": global_id("User", user["id"]),
            "email": user["email"],
            "customer": await self._account(customers[0]) if customers else None,
        }
        return {"me": me}

    async def _account(self, customer: Record) -> dict[str, Any]:
        (contracts, tariffs), subscriptions, (invoices, payments) = await asyncio.gather(
            self._contracts(customer["id"]),
            self.fetch(SUBSCRIPTIONS, [customer["id"]]),
            self._invoices([customer["id"]], DASHBOARD_INVOICES),
        )
        rows, has_next = invoices.get(customer["id"], ([], False))
        return {
            "id": global_id("Customer", customer["id"]),
            "contractNum": customer["contract_num"],
            "fullName": customer["full_name"],
            "balance": money(customer["balance"], customer["currency"]),
            "contracts": [_contract(c, tariffs[c["tariff_id"]]) for c in contracts],
            "subscriptions": [_subscription(s) for s in subscriptions],
            "invoices": {
                "edges": [
                    {"cursor": invoice_cursor(i), "node": _invoice(i, payments.get(i["id"], []))}
                    for i in rows
                ],
                "pageInfo": {
                    "hasNextPage": has_next,
                    "endCursor": invoice_cursor(rows[-1]) if rows else None,
                },
            },
        }

    async def _contracts(self, customer_id: int) -> tuple[list[Record], dict[int, Record]]:
        contracts = await self.fetch(CONTRACTS, [customer_id])
        tariff_ids = list(dict.fromkeys(c["tariff_id"] for c in contracts))
        tariffs = await self.fetch(TARIFFS, tariff_ids) if tariff_ids else []
        return contracts, {t["id"]: t for t in tariffs}

    async def _invoices(
        self, customer_ids: Sequence[int], limit: int
    ) -> tuple[dict[int, tuple[list[Record], bool]], dict[int, list[Record]]]:
        """Each customer's newest `limit` invoices and whether more exist; their payments."""
        rows = await self.fetch(INVOICE_PAGES, limit + 1, customer_ids)
        grouped = group(rows, "customer_id")
        pages = {key: (found[:limit], len(found) > limit) for key, found in grouped.items()}
        invoice_ids = [row["id"] for page, _ in pages.values() for row in page]
        payments = await self.fetch(PAYMENTS, invoice_ids) if invoice_ids else []
        return pages, group(payments, "invoice_id")

    async def staff_customers(self, claims: AccessClaims, first: int) -> dict[str, Any]:
        if claims.role not in STAFF:
            raise Failure("staff only", "FORBIDDEN")
        found = await self.fetch(CUSTOMER_PAGE, first + 1)
        page, has_next = found[:first], len(found) > first
        ids = [c["id"] for c in page]
        users, (invoices, payments) = await asyncio.gather(
            self.fetch(USERS, list(dict.fromkeys(c["user_id"] for c in page))),
            self._invoices(ids, STAFF_INVOICES),
        )
        emails = {u["id"]: u["email"] for u in users}
        edges = []
        for customer in page:
            rows, _ = invoices.get(customer["id"], ([], False))
            node = {
                "id": global_id("Customer", customer["id"]),
                "contractNum": customer["contract_num"],
                "fullName": customer["full_name"],
                "user": {"email": emails[customer["user_id"]]},
                "balance": money(customer["balance"], customer["currency"]),
                "invoices": {
                    "edges": [{"node": _staff_invoice(i, payments.get(i["id"], []))} for i in rows]
                },
            }
            edges.append({"node": node})
        end = json.dumps([page[-1]["id"]]) if page else None
        return {
            "customers": {
                "edges": edges,
                "pageInfo": {"hasNextPage": has_next, "endCursor": end and b64(end)},
            }
        }

    def _respond(self, status: int, body: Any) -> Response:
        self.requests[status] = self.requests.get(status, 0) + 1
        return Response(
            json.dumps(body, separators=(",", ":")),
            status_code=status,
            media_type="application/json",
        )

    async def ready(self, _request: Request) -> Response:
        assert self.pool is not None
        conn = await self.pool.acquire()
        try:
            await conn.fetchval("SELECT 1")  # not counted: no scenario's statement
        finally:
            self.pool.release(conn)
        return Response('{"status":"ok"}', media_type="application/json")

    async def metrics(self, _request: Request) -> Response:
        """The two series bench/dashboard.py reads, named as the gateway names them."""
        lines = [f"kabinet_db_statements_total {self.statements}"]
        lines += [
            f'kabinet_http_requests_total{{method="POST",route="{PATH}",status="{status}"}} {n}'
            for status, n in sorted(self.requests.items())
        ]
        return Response("\n".join(lines) + "\n", media_type="text/plain")


def group(rows: Iterable[Record], column: str) -> dict[Any, list[Record]]:
    grouped: dict[Any, list[Record]] = {}
    for row in rows:
        grouped.setdefault(row[column], []).append(row)
    return grouped


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def global_id(type_name: str, pk: int) -> str:
    return b64(f"{type_name}:{pk}")  # resolvers.relay.to_global_id


def invoice_cursor(invoice: Record) -> str:
    # resolvers.relay.encode_cursor of the invoice order's key (period_start, id)
    return b64(json.dumps([invoice["period_start"].isoformat(), invoice["id"]]))


def money(amount: Decimal, currency: str) -> dict[str, str]:
    return {"amount": str(amount), "currency": currency}


def amount_due(invoice: Record, payments: Iterable[Record]) -> Decimal:
    """domains.billing.settlement.amount_due, on records."""
    if invoice["status"] not in ISSUED:
        return ZERO
    kept = (p["amount"] - p["refunded_amount"] for p in payments if p["status"] in SETTLED)
    return invoice["amount"] - sum(kept, ZERO)


def _contract(contract: Record, tariff: Record) -> dict[str, Any]:
    return {
        "id": global_id("Contract", contract["id"]),
        "address": contract["address"],
        "status": contract["status"].upper(),
        "tariff": {
            "id": global_id("Tariff", tariff["id"]),
            "name": tariff["name"],
            "downloadMbps": tariff["download_mbps"],
            "uploadMbps": tariff["upload_mbps"],
            "monthlyPrice": money(tariff["monthly_price"], tariff["currency"]),
        },
    }


def _subscription(subscription: Record) -> dict[str, Any]:
    return {
        "id": global_id("Subscription", subscription["id"]),
        "status": subscription["status"].upper(),
        "startedAt": subscription["started_at"].isoformat(),
    }


def _invoice(invoice: Record, payments: list[Record]) -> dict[str, Any]:
    due_date = invoice["due_date"]
    return {
        "id": global_id("Invoice", invoice["id"]),
        "number": invoice["number"],
        "status": invoice["status"].upper(),
        "periodStart": invoice["period_start"].isoformat(),
        "periodEnd": invoice["period_end"].isoformat(),
        "dueDate": due_date.isoformat() if due_date else None,
        "amount": money(invoice["amount"], invoice["currency"]),
        "amountDue": money(amount_due(invoice, payments), invoice["currency"]),
        "payments": [_payment(p) for p in payments],
    }


def _staff_invoice(invoice: Record, payments: list[Record]) -> dict[str, Any]:
    return {
        "id": global_id("Invoice", invoice["id"]),
        "number": invoice["number"],
        "status": invoice["status"].upper(),
        "amount": money(invoice["amount"], invoice["currency"]),
        "payments": [
            {"id": global_id("Payment", p["id"]), "status": p["status"].upper()} for p in payments
        ],
    }


def _payment(payment: Record) -> dict[str, Any]:
    return {
        "id": global_id("Payment", payment["id"]),
        "method": payment["method"].upper(),
        "status": payment["status"].upper(),
        "createdAt": payment["created_at"].isoformat(),
        "amount": money(payment["amount"], payment["currency"]),
    }


def create_app(settings: Settings) -> Starlette:
    ceiling = Ceiling(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await ceiling.open()
        yield
        assert ceiling.pool is not None
        await ceiling.pool.close()

    return Starlette(
        routes=[
            Route(PATH, ceiling.graphql, methods=["POST"]),
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
