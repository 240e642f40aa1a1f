"""The billing subgraph: invoices, payments, ledger transactions, and the customer's money."""

from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import strawberry

from domains.billing.billing_run import BillingRunRow
from domains.billing.invoice import InvoiceRow
from domains.billing.models import (
    BillingRunState,
    EntrySide,
    InvoiceStatus,
    LedgerAccount,
    PaymentMethod,
    PaymentStatus,
    PromisedPaymentStatus,
)
from domains.billing.payment import PaymentRow
from domains.billing.transaction import BalanceEntryRow, TransactionRow
from resolvers import billing as billing_resolvers
from resolvers.relay import pk_of
from resolvers.rest import billing as billing_rest
from schema.access import Access
from schema.plugin import Domain
from schema.shared import Connection, Money, Node, is_row, node_id

if TYPE_CHECKING:
    from schema.entities import Customer

CustomerRef = Annotated["Customer", strawberry.lazy("schema.entities")]

InvoiceState = strawberry.enum(InvoiceStatus, name="InvoiceStatus")
PaymentKind = strawberry.enum(PaymentMethod, name="PaymentMethod")
PaymentState = strawberry.enum(PaymentStatus, name="PaymentStatus")
Account = strawberry.enum(LedgerAccount, name="LedgerAccount")
Side = strawberry.enum(EntrySide, name="EntrySide")
RunState = strawberry.enum(BillingRunState, name="BillingRunState")
PromiseState = strawberry.enum(PromisedPaymentStatus, name="PromisedPaymentStatus")


@strawberry.federation.type(keys=["id"], description="One ledger entry of a payment.")
class Transaction(Node):
    id: strawberry.ID = node_id("Transaction")
    account: Account
    type: Side = strawberry.field(description="Debit or credit.")
    amount: Money = strawberry.field(resolver=billing_resolvers.transaction_amount)
    created_at: datetime
    payment: Annotated["Payment", strawberry.lazy("schema.billing")] | None = strawberry.field(
        resolver=billing_resolvers.transaction_payment,
        description="The payment or refund behind the entry; none for a top-up.",
    )

    is_type_of = is_row(TransactionRow)

    @classmethod
    async def resolve_reference(cls, info: strawberry.Info, id: strawberry.ID) -> TransactionRow:
        return await billing_resolvers.transaction_by_pk(info, pk_of(id, "Transaction"))


@strawberry.federation.type(
    keys=["id"], description="An entry of the account balance, and the balance it left."
)
class BalanceEntry(Transaction):
    balance_after: Money = strawberry.field(
        resolver=billing_resolvers.balance_entry_balance_after,
        description="The balance right after this entry (a running total, oldest first).",
    )

    is_type_of = is_row(BalanceEntryRow)


@strawberry.federation.type(
    keys=["id"], description="Money paid against an invoice, or a card top-up of the balance."
)
class Payment(Node):
    id: strawberry.ID = node_id("Payment")
    amount: Money = strawberry.field(resolver=billing_resolvers.payment_amount)
    method: PaymentKind
    status: PaymentState
    refunded_amount: Money = strawberry.field(
        resolver=billing_resolvers.payment_refunded_amount,
        description="Given back to the account balance so far.",
    )
    created_at: datetime
    invoice: Annotated["Invoice", strawberry.lazy("schema.billing")] | None = strawberry.field(
        resolver=billing_resolvers.payment_invoice, description="None for a balance top-up."
    )
    confirmation_url: str | None = strawberry.field(
        description="Card payments: where the payer confirms the payment with the provider."
    )
    transactions: list[Transaction] = strawberry.field(
        resolver=billing_resolvers.payment_transactions, description="Ledger entries; they balance."
    )

    is_type_of = is_row(PaymentRow)

    @classmethod
    async def resolve_reference(cls, info: strawberry.Info, id: strawberry.ID) -> PaymentRow:
        return await billing_resolvers.payment_by_pk(info, pk_of(id, "Payment"))


@strawberry.type(
    description="One billed item of an invoice: a subscription's days of the period at its "
    "tariff's monthly price, prorated by day."
)
class InvoiceLine:
    description: str = strawberry.field(description="What was billed, for the customer.")
    period_start: date = strawberry.field(description="The invoice's billing period.")
    period_end: date
    first_day: date = strawberry.field(description="The first day billed.")
    last_day: date = strawberry.field(description="The last day billed.")
    days: int = strawberry.field(
        description="Days billed: fewer than firstDay to lastDay when the subscription "
        "paused in between."
    )
    unit_price: Money = strawberry.field(
        resolver=billing_resolvers.line_unit_price,
        description="The tariff's monthly price for the period, as billed.",
    )
    amount: Money = strawberry.field(
        resolver=billing_resolvers.line_amount,
        description="unitPrice x days / days in the period, rounded half-up to the cent.",
    )
    subscription_id: strawberry.ID = strawberry.field(
        resolver=billing_resolvers.line_subscription_id,
        description="Global id of the ServiceSubscription billed (`node(id:)` reads it).",
    )
    tariff_id: strawberry.ID = strawberry.field(
        resolver=billing_resolvers.line_tariff_id,
        description="Global id of the Tariff billed (`node(id:)` reads it).",
    )


@strawberry.federation.type(keys=["id"], description="A bill for one period of service.")
class Invoice(Node):
    id: strawberry.ID = node_id("Invoice")
    number: str = strawberry.field(description="Human-readable invoice number.")
    period_start: date
    period_end: date
    status: InvoiceState
    issued_at: datetime | None
    due_date: date | None
    amount: Money = strawberry.field(resolver=billing_resolvers.invoice_amount)
    amount_due: Money = strawberry.field(
        resolver=billing_resolvers.invoice_amount_due, description="What is still to be paid."
    )
    lines: list[InvoiceLine] = strawberry.field(
        resolver=billing_resolvers.invoice_lines,
        description="What the invoice bills, one line per subscription and period; the "
        "amount is their sum (empty only on an old invoice that names no subscription).",
    )
    payments: list[Payment] = strawberry.field(resolver=billing_resolvers.invoice_payments)
    customer: CustomerRef = strawberry.field(resolver=billing_resolvers.invoice_customer)

    is_type_of = is_row(InvoiceRow)

    @classmethod
    async def resolve_reference(cls, info: strawberry.Info, id: strawberry.ID) -> InvoiceRow:
        return await billing_resolvers.invoice_by_pk(info, pk_of(id, "Invoice"))


@strawberry.federation.type(
    keys=["id"],
    description="One monthly invoice run of a period, and what it billed (staff). Its counts "
    "are what its committed batches wrote; a run killed and started again carries its "
    "record on.",
)
class BillingRun(Node):
    id: strawberry.ID = node_id("BillingRun")
    period_start: date = strawberry.field(description="The calendar month billed, its 1st.")
    period_end: date
    state: RunState
    started_at: datetime
    finished_at: datetime | None
    invoices: int = strawberry.field(description="Invoices issued.")
    lines: int = strawberry.field(description="Invoice lines written.")
    amount: Decimal = strawberry.field(
        description="The sum of the invoices issued, in their accounts' currency."
    )
    autopaid: int = strawberry.field(description="Invoices paid from the balance by the run.")

    is_type_of = is_row(BillingRunRow)

    @classmethod
    async def resolve_reference(cls, info: strawberry.Info, id: strawberry.ID) -> BillingRunRow:
        return await billing_resolvers.billing_run_by_pk(info, pk_of(id, "BillingRun"))


@strawberry.type(
    description="A promised payment: credit on the balance for a few days, which paid the "
    "debt and keeps the service on; the money that next lands on the balance repays it."
)
class PromisedPayment:
    amount: Money = strawberry.field(resolver=billing_resolvers.promised_amount)
    repaid: Money = strawberry.field(resolver=billing_resolvers.promised_repaid)
    outstanding: Money = strawberry.field(
        resolver=billing_resolvers.promised_outstanding, description="Still to repay."
    )
    status: PromiseState = strawberry.field(
        description="ACTIVE until repaid (REPAID) or its days run out (EXPIRED: the service "
        "is suspended until it is repaid)."
    )
    created_at: datetime
    expires_at: datetime
    closed_at: datetime | None = strawberry.field(description="When it was repaid in full.")


@strawberry.type
class CustomerBillingFields:
    """The billing subgraph's part of `Customer`."""

    balance: Money = strawberry.field(
        resolver=billing_resolvers.customer_balance, description="Prepaid funds on the account."
    )
    invoices: Connection[Invoice] = strawberry.field(
        resolver=billing_resolvers.customer_invoices, description="Newest first."
    )
    payments: Connection[Payment] = strawberry.field(
        resolver=billing_resolvers.customer_payments, description="Newest first."
    )


@strawberry.type
class Query:
    invoices: Connection[Invoice] = strawberry.field(
        resolver=billing_resolvers.viewer_invoices,
        description="The viewer's invoices, newest first.",
    )
    invoice: Invoice = strawberry.field(resolver=billing_resolvers.invoice)
    ledger: Connection[Transaction] = strawberry.field(
        resolver=billing_resolvers.ledger,
        description="Staff: a customer's ledger entries, every account, newest first.",
    )
    balance_history: Connection[BalanceEntry] = strawberry.field(
        resolver=billing_resolvers.balance_history,
        description="The viewer's balance movements, newest first (credit: in, debit: out).",
    )
    billing_runs: Connection[BillingRun] = strawberry.field(
        resolver=billing_resolvers.billing_runs,
        description="Staff: the monthly invoice runs, newest first.",
    )
    billing_run: BillingRun = strawberry.field(
        resolver=billing_resolvers.billing_run, description="Staff: one invoice run."
    )
    promised_payments: list[PromisedPayment] = strawberry.field(
        resolver=billing_resolvers.promised_payments,
        description="The viewer's promised payments, newest first (staff: one customer's, "
        "named by customerId).",
    )


@strawberry.input(description="Pay an invoice; a retry with the same key pays nothing again.")
class PayInvoiceInput:
    invoice_id: strawberry.ID
    method: PaymentKind
    idempotency_key: str = strawberry.field(
        description="Unique per intended payment (a UUID); kept 24 hours."
    )
    amount: Decimal | None = strawberry.field(
        default=None, description="At most what is due; omitted: all of it."
    )


@strawberry.type(description="What a payment or refund changed, for the client to refresh.")
class PaymentPayload:
    payment: Payment
    invoice: Invoice
    customer: CustomerRef


@strawberry.type(description="A started top-up: confirm it at `confirmationUrl`.")
class TopUpPayload:
    payment: Payment = strawberry.field(
        description="PENDING until the provider reports the result; then SUCCEEDED or FAILED."
    )
    confirmation_url: str
    customer: CustomerRef


@strawberry.type(description="A promised payment granted, and the account after it.")
class PromisedPaymentPayload:
    promised_payment: PromisedPayment
    customer: CustomerRef


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Pay an invoice, wholly or in part, from the balance or by card (the "
        "payment stays PENDING until the provider confirms it at `payment.confirmationUrl`)."
    )
    async def pay_invoice(self, info: strawberry.Info, input: PayInvoiceInput) -> PaymentPayload:
        return await billing_resolvers.pay_invoice(  # type: ignore[return-value]
            info, input.invoice_id, input.method, input.idempotency_key, input.amount
        )

    @strawberry.mutation(
        description="Give (part of) a payment back to the account balance. A retry with the "
        "same key refunds nothing again."
    )
    async def refund_payment(
        self,
        info: strawberry.Info,
        payment_id: strawberry.ID,
        amount: Decimal,
        reason: str,
        idempotency_key: Annotated[
            str,
            strawberry.argument(description="Unique per intended refund (a UUID); kept 24 hours."),
        ],
    ) -> PaymentPayload:
        return await billing_resolvers.refund_payment(  # type: ignore[return-value]
            info, payment_id, amount, reason, idempotency_key
        )

    void_invoice: Invoice = strawberry.field(
        resolver=billing_resolvers.void,
        description="Void an unpaid invoice (admins): its issuance is reversed in the ledger, "
        "nothing is deleted. One with a payment on it is refunded first.",
    )

    @strawberry.mutation(
        description="Top up the balance by card: starts a provider payment to confirm; the "
        "balance grows when the provider confirms it. A retry with the same key starts nothing."
    )
    async def top_up_balance(
        self, info: strawberry.Info, amount: Decimal, idempotency_key: str
    ) -> TopUpPayload:
        return await billing_resolvers.top_up_balance(  # type: ignore[return-value]
            info, amount, idempotency_key
        )

    @strawberry.mutation(
        description="Take a promised payment: credit on the balance (at most the configured "
        "maximum) that pays the unpaid invoices, oldest first, and resumes suspended service "
        "at once; repaid first by the next money on the balance. For a suspended customer or "
        "one whose balance does not cover what is due; operators and admins name the "
        "customer (customerId) to act on their behalf."
    )
    async def activate_promised_payment(
        self, info: strawberry.Info, amount: Decimal, customer_id: strawberry.ID | None = None
    ) -> PromisedPaymentPayload:
        return await billing_resolvers.activate_promised_payment(  # type: ignore[return-value]
            info, amount, customer_id
        )


# Live updates: subscriptions fed by billing's events (resolvers.live has the mechanism).

_EVENT_ID = "Pass it as `after` when subscribing again, to get what came since."


@strawberry.type(
    description="An invoice changed: issued, paid, paid in part, a payment refunded, or overdue."
)
class InvoiceUpdatedEvent:
    event_id: strawberry.ID = strawberry.field(description=_EVENT_ID)
    occurred_at: datetime
    invoice: Invoice = strawberry.field(
        resolver=billing_resolvers.change_invoice, description="As it is now."
    )


@strawberry.type(description="A payment moved money: an invoice paid, or a balance top-up.")
class PaymentCreatedEvent:
    event_id: strawberry.ID = strawberry.field(description=_EVENT_ID)
    occurred_at: datetime
    payment: Payment = strawberry.field(resolver=billing_resolvers.change_payment)


@strawberry.type(description="The account balance moved.")
class BalanceChangedEvent:
    event_id: strawberry.ID = strawberry.field(description=_EVENT_ID)
    occurred_at: datetime
    balance: Money = strawberry.field(description="The balance right after the change.")
    delta: Money = strawberry.field(description="Positive: money in; negative: money out.")
    reason: str = strawberry.field(description="`payment`, `refund` or `top_up`.")


@strawberry.type(
    description="A subscription suspended for debt (or an unrepaid promised payment), or "
    "resumed by the payment that cleared it."
)
class ServiceStatusChangedEvent:
    event_id: strawberry.ID = strawberry.field(description=_EVENT_ID)
    occurred_at: datetime
    subscription_id: strawberry.ID = strawberry.field(
        description="Global id of the ServiceSubscription (`node(id:)` reads it)."
    )
    suspended: bool = strawberry.field(description="True: suspended; false: resumed.")
    reason: str | None = strawberry.field(
        description="Why it was suspended: `debt` or `promise_expired`; none on resuming."
    )


@strawberry.type
class Subscription:
    invoice_updated: InvoiceUpdatedEvent = strawberry.subscription(
        resolver=billing_resolvers.invoice_updated,
        description="The viewer's invoices as they change (staff: one customer's).",
    )
    payment_created: PaymentCreatedEvent = strawberry.subscription(
        resolver=billing_resolvers.payment_created,
        description="The viewer's new payments (staff: one customer's).",
    )
    balance_changed: BalanceChangedEvent = strawberry.subscription(
        resolver=billing_resolvers.balance_changed,
        description="The viewer's balance movements (staff: one customer's).",
    )
    service_status_changed: ServiceStatusChangedEvent = strawberry.subscription(
        resolver=billing_resolvers.service_status_changed,
        description="The viewer's subscriptions suspended or resumed (staff: one customer's).",
    )


domain = Domain(
    name="billing",
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    nodes=(Invoice, Payment, Transaction, BalanceEntry, BillingRun),
    entity_parts={"Customer": CustomerBillingFields},
    access={
        "Query.invoices": Access.CUSTOMER,
        "Query.invoice": Access.SIGNED_IN,
        "Query.ledger": Access.STAFF,
        "Query.balanceHistory": Access.CUSTOMER,
        "Query.billingRuns": Access.STAFF,
        "Query.billingRun": Access.STAFF,
        "Mutation.payInvoice": Access.CUSTOMER,
        "Mutation.refundPayment": Access.ADMIN,
        "Mutation.voidInvoice": Access.ADMIN,
        "Mutation.topUpBalance": Access.CUSTOMER,
        # A customer's own; operators and admins on a customer's behalf.
        "Query.promisedPayments": Access.SIGNED_IN,
        "Mutation.activatePromisedPayment": Access.SIGNED_IN,
        "PromisedPayment": Access.SIGNED_IN,
        "PromisedPaymentPayload": Access.SIGNED_IN,
        # Live: customers their own events; staff one customer's, named by customerId.
        "Subscription.invoiceUpdated": Access.SIGNED_IN,
        "Subscription.paymentCreated": Access.SIGNED_IN,
        "Subscription.balanceChanged": Access.SIGNED_IN,
        "Subscription.serviceStatusChanged": Access.SIGNED_IN,
        "Invoice": Access.SIGNED_IN,
        "InvoiceConnection": Access.SIGNED_IN,
        "InvoiceEdge": Access.SIGNED_IN,
        "InvoiceLine": Access.SIGNED_IN,
        "Payment": Access.SIGNED_IN,
        "PaymentConnection": Access.SIGNED_IN,
        "PaymentEdge": Access.SIGNED_IN,
        "Transaction": Access.SIGNED_IN,
        "TransactionConnection": Access.SIGNED_IN,
        "TransactionEdge": Access.SIGNED_IN,
        # Only balanceHistory answers these, to the customer whose balance it is.
        "BalanceEntry": Access.CUSTOMER,
        "BalanceEntryConnection": Access.CUSTOMER,
        "BalanceEntryEdge": Access.CUSTOMER,
        "BillingRun": Access.STAFF,
        "BillingRunConnection": Access.STAFF,
        "BillingRunEdge": Access.STAFF,
        "PaymentPayload": Access.SIGNED_IN,
        "TopUpPayload": Access.CUSTOMER,
        "InvoiceUpdatedEvent": Access.SIGNED_IN,
        "PaymentCreatedEvent": Access.SIGNED_IN,
        "BalanceChangedEvent": Access.SIGNED_IN,
        "ServiceStatusChangedEvent": Access.SIGNED_IN,
    },
    rest=billing_rest.ROUTES,
    error_status=billing_rest.ERROR_STATUS,
    events=("payment", "invoice", "balance", "subscription", "promised_payment"),
)
