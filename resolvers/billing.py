"""Billing resolvers: invoices, payments, ledger transactions, the balance; paying, refunding."""

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from operator import attrgetter
from typing import Any

import strawberry
from strawberry import Info

from dataloaders.billing import (
    BillingRunsByIdLoader,
    InvoiceLinesByInvoiceIdLoader,
    InvoicePagesByCustomerIdLoader,
    InvoicesByIdLoader,
    PaymentPagesByCustomerIdLoader,
    PaymentsByIdLoader,
    PaymentsByInvoiceIdLoader,
    TransactionsByIdLoader,
    TransactionsByPaymentIdLoader,
    prime_outcome,
)
from domains.billing.billing_run import BILLING_RUN_ORDER, BillingRunRow, billing_run_page
from domains.billing.card import top_up_balance as top_up_balance_action
from domains.billing.errors import PromisedPaymentNotAllowed
from domains.billing.invoice import INVOICE_ORDER, InvoiceFilter, InvoiceRow
from domains.billing.invoice_line import InvoiceLineRow
from domains.billing.invoice_void import void_invoice
from domains.billing.models import InvoiceStatus, PaymentMethod
from domains.billing.pay_invoice import pay_invoice as pay_invoice_action
from domains.billing.payment import PAYMENT_ORDER, PaymentRow
from domains.billing.promise import PromisedPaymentRow, promises_by_customer_ids
from domains.billing.promised_payment import activate_promised_payment as activate_action
from domains.billing.promised_payment import promise_customer
from domains.billing.refund_payment import refund_payment as refund_payment_action
from domains.billing.settlement import amount_due
from domains.billing.transaction import (
    LEDGER_ORDER,
    BalanceEntryRow,
    TransactionRow,
    balance_history_page,
    ledger_page,
)
from domains.customers.customer import CustomerRow
from domains.errors import Forbidden, NotFound
from domains.events.cloudevent import CloudEvent
from domains.keyset import Page, Window
from domains.money import Money
from resolvers.access import load_owned
from resolvers.context import Context
from resolvers.customers import customer_by_pk
from resolvers.live import LiveEvent, Shared, event_fields, live, watched_customer
from resolvers.lookup import lookup
from resolvers.relay import (
    Connection,
    connection_from_page,
    pk_of,
    to_global_id,
    window_from_arguments,
)


async def invoice_by_pk(info: Info[Context], pk: int) -> InvoiceRow:
    return await load_owned(info, info.context.loaders.of(InvoicesByIdLoader), pk, "invoice")


async def payment_by_pk(info: Info[Context], pk: int) -> PaymentRow:
    return await load_owned(info, info.context.loaders.of(PaymentsByIdLoader), pk, "payment")


async def transaction_by_pk(info: Info[Context], pk: int) -> TransactionRow:
    return await load_owned(
        info, info.context.loaders.of(TransactionsByIdLoader), pk, "transaction"
    )


async def billing_run_by_pk(info: Info[Context], pk: int) -> BillingRunRow:
    """Staff only; to anyone else a run reads as missing, so ids cannot be probed."""
    if not info.context.signed_in.is_staff:
        raise NotFound("billing run")
    row = await info.context.loaders.of(BillingRunsByIdLoader).load(pk)
    if row is None:
        raise NotFound("billing run")
    return row


async def billing_run(info: Info[Context], id: strawberry.ID) -> BillingRunRow:
    return await billing_run_by_pk(info, pk_of(id, "BillingRun"))


async def billing_runs(
    info: Info[Context],
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
) -> Connection[BillingRunRow]:
    """Staff: the monthly invoice runs, newest first."""
    if not info.context.signed_in.is_staff:
        raise Forbidden("only staff can list billing runs")
    window = window_from_arguments(BILLING_RUN_ORDER, first, after, last, before)
    async with info.context.db.read() as reader:
        page = await billing_run_page(reader, window)
    return connection_from_page(page, BILLING_RUN_ORDER)


async def invoice(info: Info[Context], id: strawberry.ID) -> InvoiceRow:
    return await invoice_by_pk(info, pk_of(id, "Invoice"))


def _invoice_page_key(
    root: CustomerRow,
    status: list[InvoiceStatus] | None = None,
    period_from: date | None = None,
    period_to: date | None = None,
    **window: Any,
) -> tuple[int, InvoiceFilter, Window]:
    """`customer_invoices`' arguments as its loader's key; `window`: first, after, ..."""
    invoice_filter = InvoiceFilter(frozenset(status or ()), period_from, period_to)
    return root.id, invoice_filter, window_from_arguments(INVOICE_ORDER, **window)


def _invoice_connection(page: Page[InvoiceRow], *_: Any, **__: Any) -> Connection[InvoiceRow]:
    return connection_from_page(page, INVOICE_ORDER)


@lookup(InvoicePagesByCustomerIdLoader, _invoice_page_key, _invoice_connection)
async def customer_invoices(
    root: CustomerRow,
    info: Info[Context],
    status: list[InvoiceStatus] | None = None,
    period_from: date | None = None,
    period_to: date | None = None,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
) -> Connection[InvoiceRow]:
    """Newest first."""


async def viewer_invoices(
    info: Info[Context],
    status: list[InvoiceStatus] | None = None,
    period_from: date | None = None,
    period_to: date | None = None,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
) -> Connection[InvoiceRow]:
    viewer = info.context.signed_in
    if viewer.customer_id is None:
        raise Forbidden("staff accounts have no invoices; use customer(id:) { invoices }")
    customer = await customer_by_pk(info, viewer.customer_id)
    return await customer_invoices(
        customer,
        info,
        status=status,
        period_from=period_from,
        period_to=period_to,
        first=first,
        after=after,
        last=last,
        before=before,
    )


def _payment_page_key(root: CustomerRow, **window: Any) -> tuple[int, Window]:
    """`customer_payments`' arguments as its loader's key; `window`: first, after, ..."""
    return root.id, window_from_arguments(PAYMENT_ORDER, **window)


def _payment_connection(page: Page[PaymentRow], *_: Any, **__: Any) -> Connection[PaymentRow]:
    return connection_from_page(page, PAYMENT_ORDER)


@lookup(PaymentPagesByCustomerIdLoader, _payment_page_key, _payment_connection)
async def customer_payments(
    root: CustomerRow,
    info: Info[Context],
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
) -> Connection[PaymentRow]:
    """Newest first."""


def customer_balance(root: CustomerRow) -> Money:
    return Money(root.balance, root.currency)


def invoice_amount(root: InvoiceRow) -> Money:
    return Money(root.amount, root.currency)


def _due(payments: list[PaymentRow], invoice: InvoiceRow, _context: Context) -> Money:
    return Money(amount_due(invoice, payments), invoice.currency)


@lookup(PaymentsByInvoiceIdLoader, attrgetter("id"), _due)
async def invoice_amount_due(root: InvoiceRow, info: Info[Context]) -> Money:
    """The invoice's amount less what its payments settled."""


@lookup(PaymentsByInvoiceIdLoader, attrgetter("id"))
async def invoice_payments(root: InvoiceRow, info: Info[Context]) -> list[PaymentRow]:
    """Oldest first."""


@lookup(InvoiceLinesByInvoiceIdLoader, attrgetter("id"))
async def invoice_lines(root: InvoiceRow, info: Info[Context]) -> list[InvoiceLineRow]:
    """In the order they were billed."""


def line_unit_price(root: InvoiceLineRow) -> Money:
    return Money(root.unit_price, root.currency)


def line_amount(root: InvoiceLineRow) -> Money:
    return Money(root.amount, root.currency)


def line_subscription_id(root: InvoiceLineRow) -> strawberry.ID:
    return strawberry.ID(to_global_id("Subscription", root.subscription_id))


def line_tariff_id(root: InvoiceLineRow) -> strawberry.ID:
    return strawberry.ID(to_global_id("Tariff", root.tariff_id))


async def invoice_customer(root: InvoiceRow, info: Info[Context]) -> CustomerRow:
    return await customer_by_pk(info, root.customer_id)


def payment_amount(root: PaymentRow) -> Money:
    return Money(root.amount, root.currency)


async def payment_invoice(root: PaymentRow, info: Info[Context]) -> InvoiceRow | None:
    if root.invoice_id is None:
        return None
    return await invoice_by_pk(info, root.invoice_id)


@lookup(TransactionsByPaymentIdLoader, attrgetter("id"))
async def payment_transactions(root: PaymentRow, info: Info[Context]) -> list[TransactionRow]:
    """The ledger entries the payment posted."""


def transaction_amount(root: TransactionRow) -> Money:
    return Money(root.amount, root.currency)


def balance_entry_balance_after(root: BalanceEntryRow) -> Money:
    return Money(root.balance_after, root.currency)


def payment_refunded_amount(root: PaymentRow) -> Money:
    return Money(root.refunded_amount, root.currency)


async def transaction_payment(root: TransactionRow, info: Info[Context]) -> PaymentRow | None:
    if root.payment_id is None:
        return None
    return await payment_by_pk(info, root.payment_id)


@dataclass(frozen=True, slots=True)
class PaymentOutcome:
    """What a payment or refund changed: as its transaction committed it, or read back."""

    payment: PaymentRow
    invoice: InvoiceRow
    customer: CustomerRow


async def _outcome(info: Info[Context], payment_id: int, invoice_id: int) -> PaymentOutcome:
    payment = await payment_by_pk(info, payment_id)
    invoice = await invoice_by_pk(info, invoice_id)
    return PaymentOutcome(payment, invoice, await customer_by_pk(info, payment.customer_id))


async def pay_invoice(
    info: Info[Context],
    invoice_id: strawberry.ID,
    method: PaymentMethod,
    idempotency_key: str,
    amount: Decimal | None = None,
) -> PaymentOutcome:
    result = await pay_invoice_action(
        info.context.db,
        info.context.signed_in,
        invoice_id=pk_of(invoice_id, "Invoice"),
        method=method,
        amount=amount,
        idempotency_key=idempotency_key,
        acquiring=info.context.acquiring,
    )
    prime_outcome(info.context.loaders, result)
    return await _outcome(info, result.payment_id, result.invoice_id)


async def refund_payment(
    info: Info[Context],
    payment_id: strawberry.ID,
    amount: Decimal,
    reason: str,
    idempotency_key: str,
) -> PaymentOutcome:
    result = await refund_payment_action(
        info.context.db,
        info.context.signed_in,
        payment_id=pk_of(payment_id, "Payment"),
        amount=amount,
        reason=reason,
        idempotency_key=idempotency_key,
    )
    prime_outcome(info.context.loaders, result)
    return await _outcome(info, result.payment_id, result.invoice_id)


@dataclass(frozen=True, slots=True)
class TopUpOutcome:
    """A started top-up: the pending payment and where the payer confirms it."""

    payment: PaymentRow
    confirmation_url: str
    customer: CustomerRow


async def top_up_balance(
    info: Info[Context], amount: Decimal, idempotency_key: str
) -> TopUpOutcome:
    result = await top_up_balance_action(
        info.context.db,
        info.context.acquiring,
        info.context.signed_in,
        amount=amount,
        idempotency_key=idempotency_key,
    )
    payment = await payment_by_pk(info, result.payment_id)
    customer = await customer_by_pk(info, result.customer_id)
    return TopUpOutcome(payment, result.confirmation_url, customer)


async def ledger(
    info: Info[Context],
    customer_id: strawberry.ID,
    first: int | None = None,
    after: str | None = None,
) -> Connection[TransactionRow]:
    """Staff: every ledger entry of one customer, newest first."""
    customer = await customer_by_pk(info, pk_of(customer_id, "Customer"))
    window = window_from_arguments(LEDGER_ORDER, first, after, None, None)
    async with info.context.db.read() as reader:
        page = await ledger_page(reader, customer.id, window)
    return connection_from_page(page, LEDGER_ORDER)


async def balance_history(
    info: Info[Context], first: int | None = None, after: str | None = None
) -> Connection[BalanceEntryRow]:
    """The viewer's balance-account entries, newest first: credits in, debits out."""
    viewer = info.context.signed_in
    if viewer.customer_id is None:
        raise Forbidden("staff accounts have no balance; use ledger(customerId:)")
    window = window_from_arguments(LEDGER_ORDER, first, after, None, None)
    async with info.context.db.read() as reader:
        page = await balance_history_page(reader, viewer.customer_id, window)
    return connection_from_page(page, LEDGER_ORDER)


# Live updates: the events behind each subscription, and what each one sends.


@dataclass(frozen=True, slots=True)
class InvoiceChange(LiveEvent):
    invoice_id: int


@dataclass(frozen=True, slots=True)
class PaymentChange(LiveEvent):
    payment_id: int


@dataclass(frozen=True, slots=True)
class BalanceChange(LiveEvent, Shared):
    balance: Money
    delta: Money
    reason: str


@dataclass(frozen=True, slots=True)
class ServiceChange(LiveEvent, Shared):
    subscription_id: strawberry.ID
    suspended: bool
    reason: str | None


def _service_change(event: CloudEvent) -> ServiceChange:
    data = event.data
    return ServiceChange(
        **event_fields(event),
        subscription_id=strawberry.ID(to_global_id("ServiceSubscription", data["subscription_id"])),
        suspended=event.type == "subscription.suspended",
        reason=data.get("reason"),
    )


def _invoice_change(event: CloudEvent) -> InvoiceChange | None:
    invoice_id = event.data.get("invoice_id")  # none for a balance top-up
    return (
        None if invoice_id is None else InvoiceChange(**event_fields(event), invoice_id=invoice_id)
    )


def _payment_change(event: CloudEvent) -> PaymentChange:
    return PaymentChange(**event_fields(event), payment_id=event.data["payment_id"])


def _balance_change(event: CloudEvent) -> BalanceChange:
    data = event.data
    return BalanceChange(
        **event_fields(event),
        balance=Money(Decimal(data["balance"]), data["currency"]),
        delta=Money(Decimal(data["delta"]), data["currency"]),
        reason=data["reason"],
    )


# The run issues an invoice, a payment moves its amount due, a refund may reopen it,
# `invoice.paid` closes it, `invoice.overdue` says its due date passed unpaid. Each is about
# the customer account: a customer watches their own, staff the one named.
invoice_updated = live(
    {"invoice.issued", "invoice.overdue", "invoice.paid", "payment.created", "payment.refunded"},
    _invoice_change,
    watched_customer,
)
payment_created = live({"payment.created"}, _payment_change, watched_customer)
balance_changed = live({"balance.changed"}, _balance_change, watched_customer)
# Dunning suspends a subscription for debt; a payment or a promised payment resumes it.
service_status_changed = live(
    {"subscription.suspended", "subscription.resumed"}, _service_change, watched_customer
)


async def change_invoice(root: InvoiceChange, info: Info[Context]) -> InvoiceRow:
    return await invoice_by_pk(info, root.invoice_id)


async def change_payment(root: PaymentChange, info: Info[Context]) -> PaymentRow:
    return await payment_by_pk(info, root.payment_id)


@dataclass(frozen=True, slots=True)
class PromisedPaymentOutcome:
    """A promised payment just granted, and the customer's account after it."""

    promised_payment: PromisedPaymentRow
    customer: CustomerRow


async def activate_promised_payment(
    info: Info[Context], amount: Decimal, customer_id: strawberry.ID | None = None
) -> PromisedPaymentOutcome:
    context = info.context
    if context.promise_terms is None:
        raise PromisedPaymentNotAllowed("promised payments are not offered here")
    result = await activate_action(
        context.db,
        context.signed_in,
        amount=amount,
        terms=context.promise_terms,
        customer_id=None if customer_id is None else pk_of(customer_id, "Customer"),
        clock=context.clock,
    )
    customer = await customer_by_pk(info, result.promise.customer_id)
    return PromisedPaymentOutcome(result.promise, customer)


async def promised_payments(
    info: Info[Context], customer_id: strawberry.ID | None = None
) -> list[PromisedPaymentRow]:
    """The viewer's promised payments, newest first; staff name the customer."""
    of_customer = promise_customer(
        info.context.signed_in, None if customer_id is None else pk_of(customer_id, "Customer")
    )
    async with info.context.db.read() as reader:
        return (await promises_by_customer_ids(reader, [of_customer]))[of_customer]


def promised_amount(root: PromisedPaymentRow) -> Money:
    return Money(root.amount, root.currency)


def promised_repaid(root: PromisedPaymentRow) -> Money:
    return Money(root.repaid, root.currency)


def promised_outstanding(root: PromisedPaymentRow) -> Money:
    return Money(root.outstanding, root.currency)


async def void(info: Info[Context], invoice_id: strawberry.ID, reason: str) -> InvoiceRow:
    context = info.context
    voided = await void_invoice(
        context.db, context.signed_in, pk_of(invoice_id, "Invoice"), reason, clock=context.clock
    )
    context.loaders.of(InvoicesByIdLoader).prime(voided.id, voided)
    return voided
