"""The analytics subgraph: counters the analytics consumer keeps from billing's events."""

from datetime import date

import strawberry

from domains.analytics.consumer import CONSUMER_NAME, HANDLERS
from resolvers import analytics as analytics_resolvers
from schema.access import Access
from schema.billing import PaymentKind
from schema.plugin import Domain
from schema.shared import Money


@strawberry.type(description="Payments of one method and currency on one UTC day.")
class PaymentDay:
    day: date
    method: PaymentKind = strawberry.field(resolver=analytics_resolvers.day_method)
    payments: int = strawberry.field(description="Payments that paid an invoice.")
    amount: Money = strawberry.field(resolver=analytics_resolvers.amount)
    refunds: int = strawberry.field(description="Refunds given back that day.")
    refunded: Money = strawberry.field(resolver=analytics_resolvers.refunded)
    revenue: Money = strawberry.field(
        resolver=analytics_resolvers.revenue, description="Amount paid less amount refunded."
    )


@strawberry.type(description="One currency's sums over the range.")
class PaymentTotals:
    payments: int
    amount: Money = strawberry.field(resolver=analytics_resolvers.amount)
    refunds: int
    refunded: Money = strawberry.field(resolver=analytics_resolvers.refunded)
    revenue: Money = strawberry.field(
        resolver=analytics_resolvers.revenue, description="Amount paid less amount refunded."
    )


@strawberry.type(
    description="Invoice payments and refunds per day and method; top-ups are prepayments, "
    "counted when the balance pays an invoice."
)
class PaymentStatistics:
    start: date = strawberry.field(name="from")
    end: date = strawberry.field(name="to")
    days: list[PaymentDay] = strawberry.field(description="Days with activity, oldest first.")
    totals: list[PaymentTotals] = strawberry.field(description="One entry per currency.")


@strawberry.type(description="Invoices issued in one currency on one UTC day.")
class InvoiceDay:
    day: date
    invoices: int = strawberry.field(description="Invoices issued that day.")
    billed: Money = strawberry.field(
        resolver=analytics_resolvers.billed, description="The sum of their amounts."
    )


@strawberry.type(description="One currency's sums over the range.")
class InvoiceTotals:
    invoices: int
    billed: Money = strawberry.field(resolver=analytics_resolvers.billed)


@strawberry.type(
    description="Invoices issued and amounts billed per day and currency, by the day of "
    "each invoice's issue."
)
class InvoiceStatistics:
    start: date = strawberry.field(name="from")
    end: date = strawberry.field(name="to")
    days: list[InvoiceDay] = strawberry.field(description="Days with invoices, oldest first.")
    totals: list[InvoiceTotals] = strawberry.field(description="One entry per currency.")


@strawberry.type
class Query:
    payment_statistics: PaymentStatistics = strawberry.field(
        resolver=analytics_resolvers.payment_statistics,
        description="Staff: payments and revenue per UTC day, `from` to `to` inclusive "
        "(at most 366 days).",
    )
    invoice_statistics: InvoiceStatistics = strawberry.field(
        resolver=analytics_resolvers.invoice_statistics,
        description="Staff: invoices issued and amount billed per UTC day, `from` to `to` "
        "inclusive (at most 366 days).",
    )


domain = Domain(
    name="analytics",
    query=Query,
    access={
        "Query.paymentStatistics": Access.STAFF,
        "PaymentStatistics": Access.STAFF,
        "PaymentDay": Access.STAFF,
        "PaymentTotals": Access.STAFF,
        "Query.invoiceStatistics": Access.STAFF,
        "InvoiceStatistics": Access.STAFF,
        "InvoiceDay": Access.STAFF,
        "InvoiceTotals": Access.STAFF,
    },
    consumers={CONSUMER_NAME: HANDLERS},
)
