"""The analytics subgraph: counters the analytics consumer keeps from billing's events."""

from datetime import date

import strawberry

from domains.analytics.payments import HANDLERS as PAYMENT_HANDLERS
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


@strawberry.type
class Query:
    payment_statistics: PaymentStatistics = strawberry.field(
        resolver=analytics_resolvers.payment_statistics,
        description="Staff: payments and revenue per UTC day, `from` to `to` inclusive "
        "(at most 366 days).",
    )


domain = Domain(
    name="analytics",
    query=Query,
    access={
        "Query.paymentStatistics": Access.STAFF,
        "PaymentStatistics": Access.STAFF,
        "PaymentDay": Access.STAFF,
        "PaymentTotals": Access.STAFF,
    },
    consumers={"analytics": PAYMENT_HANDLERS},
)
