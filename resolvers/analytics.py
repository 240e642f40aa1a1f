"""Analytics resolvers: the payment and invoice counters, read for staff."""

from datetime import date
from typing import Annotated

import strawberry
from strawberry import Info

from domains.analytics.invoices import InvoiceStatistics, InvoiceTotalsRow
from domains.analytics.invoices import invoice_statistics as read_invoice_statistics
from domains.analytics.payments import PaymentDayRow, PaymentStatistics, PaymentTotalsRow
from domains.analytics.payments import payment_statistics as read_payment_statistics
from domains.billing.models import PaymentMethod
from domains.money import Money
from resolvers.context import Context

Counted = PaymentDayRow | PaymentTotalsRow


async def payment_statistics(
    info: Info[Context],
    start: Annotated[date, strawberry.argument(name="from")],
    end: Annotated[date, strawberry.argument(name="to")],
) -> PaymentStatistics:
    return await read_payment_statistics(info.context.db, start, end)


async def invoice_statistics(
    info: Info[Context],
    start: Annotated[date, strawberry.argument(name="from")],
    end: Annotated[date, strawberry.argument(name="to")],
) -> InvoiceStatistics:
    return await read_invoice_statistics(info.context.db, start, end)


def day_method(root: PaymentDayRow) -> PaymentMethod:
    return PaymentMethod(root.method)


def amount(root: Counted) -> Money:
    return Money(root.amount, root.currency)


def refunded(root: Counted) -> Money:
    return Money(root.refunded, root.currency)


def revenue(root: Counted) -> Money:
    return Money(root.revenue, root.currency)


def billed(root: InvoiceTotalsRow) -> Money:
    return Money(root.billed, root.currency)
