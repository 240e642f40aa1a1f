"""The promised payment ("обещанный платёж"): credit for a few days, to pay the debt now.

`activate_promised_payment` grants a customer whose service is suspended, or whose balance
does not cover what their unpaid invoices owe, up to `KABINET_PROMISED_PAYMENT_MAX` for
`KABINET_PROMISED_PAYMENT_DAYS`: at most `KABINET_PROMISED_PAYMENTS_PER_28_DAYS` granted in
any 28 days, and none while another is active or ran out unrepaid. An operator (or admin)
may activate one on a customer's behalf. In one transaction, under the customer's lock:
- the promise row, and its movement: debit the customer's `promised_credit` (what they now
  owe of it), credit their balance;
- the balance pays their unpaid invoices, oldest due first (the last one in part if the
  credit falls short), as payInvoice pays from the balance: a `balance` payment each, its
  movement, `payment.created` and `balance.changed`, and `settlement.mark_paid` for those
  paid off, which resumes what they suspended;
- the customer's other suspended subscriptions resume too: an active promise keeps the
  service on (domains/billing/suspension.py).

Repayment comes first out of the money that next lands on the balance (a card top-up, or a
card payment kept as one: domains/billing/webhook.py calls `repay_promised_credit`): a
movement from the balance to `promised_credit`. Paid in full, the promise is `repaid`.

`expire_promised_payments` (the worker's) marks those whose days ran out unrepaid `expired`
and suspends all the customer's active subscriptions (`promise_expired`): the service ran
on the credit. Repaying it resumes them. It locks the customers with SKIP LOCKED, so it
never waits on a payer; one a payer holds is expired at its next pass.

Refusals: INVALID_AMOUNT (not positive whole cents, or above the maximum),
PROMISED_PAYMENT_ACTIVE, PROMISED_PAYMENT_LIMIT, PROMISED_PAYMENT_NOT_ALLOWED; each before
anything is written.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import BigInteger, bindparam, exists, insert, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domains.billing import events
from domains.billing.balance_payment import announce_balance_payment, balance_movement
from domains.billing.errors import (
    InvalidAmount,
    PromisedPaymentActive,
    PromisedPaymentLimit,
    PromisedPaymentNotAllowed,
)
from domains.billing.invoice import InvoiceRow
from domains.billing.ledger import Entry, post_movement, post_movements
from domains.billing.models import (
    EntrySide,
    Invoice,
    LedgerAccount,
    Payment,
    PaymentMethod,
    PromisedPayment,
    PromisedPaymentStatus,
    SuspensionReason,
)
from domains.billing.payment import payments_by_invoice_ids
from domains.billing.payment_start import PAYMENT_COLUMNS, Charge, payment_values
from domains.billing.promise import PROMISES_BY_CUSTOMER_ID, PromisedPaymentRow
from domains.billing.settlement import (
    PAYABLE,
    amount_due,
    lock_customer,
    mark_paid,
    valid_amount,
)
from domains.billing.suspension import SUSPEND_ALL, open_suspensions, resume_cleared
from domains.clock import SYSTEM_CLOCK, Clock
from domains.customers.customer import CustomerRow
from domains.customers.models import Customer, Subscription, SubscriptionStatus
from domains.database import Database
from domains.errors import Forbidden, InvalidInput, NotFound
from domains.identity.viewer import Viewer
from domains.reads import Read, any_of, row_columns, select_rows
from domains.writes import RowsInsert, Write, writer

promises = PromisedPayment.__table__
invoices = Invoice.__table__
customers = Customer.__table__
subscriptions = Subscription.__table__

WINDOW = timedelta(days=28)
# Promises that still stand in the way of a new one.
OPEN = (PromisedPaymentStatus.ACTIVE, PromisedPaymentStatus.EXPIRED)
BATCH_SIZE = 500


@dataclass(frozen=True, slots=True)
class PromiseTerms:
    """KABINET_PROMISED_PAYMENT_MAX, _DAYS and KABINET_PROMISED_PAYMENTS_PER_28_DAYS."""

    max_amount: Decimal
    days: int
    per_28_days: int


@dataclass(frozen=True, slots=True)
class PromiseResult:
    promise: PromisedPaymentRow
    # Invoices its credit paid (in full or the last in part), and subscriptions it resumed.
    invoices_paid: int
    resumed: int


_INSERT = Write(
    insert(promises)
    .values(
        {
            name: bindparam(name)
            for name in (
                "customer_id",
                "amount",
                "repaid",
                "currency",
                "status",
                "created_by",
                "created_at",
                "expires_at",
            )
        }
    )
    .returning(*row_columns(PromisedPaymentRow, promises)),
    PromisedPaymentRow,
)
_LOCK_UNPAID = Write(
    select_rows(InvoiceRow, invoices)
    .where(
        invoices.c.customer_id == bindparam("customer_id"), any_of(invoices.c.status, "statuses")
    )
    .order_by(invoices.c.id)
    .with_for_update(),
    InvoiceRow,
)


@dataclass(frozen=True, slots=True)
class _Flag:
    found: bool


_SUSPENDED = Read(
    _Flag,
    select(
        exists()
        .where(
            subscriptions.c.customer_id == bindparam("customer_id"),
            subscriptions.c.status == SubscriptionStatus.SUSPENDED,
        )
        .label("found")
    ),
)


@dataclass(frozen=True, slots=True)
class _Paid:
    id: int
    invoice_id: int


_PAYMENTS = RowsInsert(Payment.__table__, PAYMENT_COLUMNS, returning=_Paid)


def promise_customer(viewer: Viewer, customer_id: int | None) -> int:
    """Whose promise: a customer's own; staff name the customer they act for."""
    if viewer.is_staff:
        if customer_id is None:
            raise InvalidInput("name the customer (customerId) to act on their behalf")
        return customer_id
    if viewer.customer_id is None:
        raise Forbidden("only a customer, or staff on their behalf, takes a promised payment")
    if customer_id is not None and customer_id != viewer.customer_id:
        raise NotFound("customer")
    return viewer.customer_id


async def activate_promised_payment(
    db: Database,
    viewer: Viewer,
    *,
    amount: Decimal,
    terms: PromiseTerms,
    customer_id: int | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> PromiseResult:
    of_customer = promise_customer(viewer, customer_id)
    if not valid_amount(amount) or amount > terms.max_amount:
        raise InvalidAmount(
            f"a promised payment is positive whole cents, at most {terms.max_amount}"
        )
    async with db.transaction() as session:
        now = clock.now()
        customer = await lock_customer(session, of_customer)
        if customer is None:
            raise NotFound("customer")
        w = writer(session)
        taken = await w.fetch(PROMISES_BY_CUSTOMER_ID, customer_ids=[customer.id])
        if any(p.status in OPEN for p in taken):
            raise PromisedPaymentActive("a promised payment is active or not yet repaid")
        if sum(1 for p in taken if p.created_at > now - WINDOW) >= terms.per_28_days:
            raise PromisedPaymentLimit(f"at most {terms.per_28_days} promised payments in 28 days")
        # After the customer, the invoices, in id order: the documented lock order.
        unpaid = await w.fetch(_LOCK_UNPAID, customer_id=customer.id, statuses=list(PAYABLE))
        paid_so_far = await payments_by_invoice_ids(w, [i.id for i in unpaid])
        owed = [(i, amount_due(i, paid_so_far[i.id])) for i in unpaid]
        [suspended] = await w.fetch(_SUSPENDED, customer_id=customer.id)
        if not suspended.found and sum(d for _, d in owed) <= customer.balance:
            raise PromisedPaymentNotAllowed(
                "the service is not suspended and the balance covers what is due"
            )
        [promise] = await w.fetch(
            _INSERT,
            customer_id=customer.id,
            amount=amount,
            repaid=Decimal("0.00"),
            currency=customer.currency,
            status=PromisedPaymentStatus.ACTIVE,
            created_by=viewer.user_id,
            created_at=now,
            expires_at=now + timedelta(days=terms.days),
        )
        await _grant(session, customer, promise, now)
        balance = customer.balance + amount
        paying = _oldest_first(owed, customer, balance)
        await _pay(session, paying, now)
        resumed = await resume_cleared(session, [customer.id], now)
    return PromiseResult(promise, len(paying), len(resumed))


async def _grant(
    session: AsyncSession, customer: CustomerRow, promise: PromisedPaymentRow, now: datetime
) -> None:
    common = {"amount": promise.amount, "currency": promise.currency, "customer_id": customer.id}
    await post_movement(
        session,
        [
            Entry(LedgerAccount.PROMISED_CREDIT, EntrySide.DEBIT, **common),
            Entry(LedgerAccount.CUSTOMER_BALANCE, EntrySide.CREDIT, **common),
        ],
        now,
    )
    await events.promised_payment(
        session,
        "activated",
        promised_payment_id=promise.id,
        customer_id=customer.id,
        amount=promise.amount,
        currency=promise.currency,
        expires_at=promise.expires_at.isoformat(),
    )
    await events.balance_changed(
        session,
        customer_id=customer.id,
        balance=customer.balance + promise.amount,
        delta=promise.amount,
        currency=promise.currency,
        reason="promised_payment",
    )


@dataclass(frozen=True, slots=True)
class _Paying:
    invoice: InvoiceRow
    amount: Decimal
    due: Decimal
    balance: Decimal  # what the balance holds once this is paid


def _oldest_first(
    owed: Sequence[tuple[InvoiceRow, Decimal]], customer: CustomerRow, balance: Decimal
) -> list[_Paying]:
    paying = []
    for invoice, due in sorted(owed, key=lambda o: (o[0].due_date or o[0].period_end, o[0].id)):
        amount = min(balance, due)
        if amount <= 0 or invoice.currency != customer.currency:
            continue
        balance -= amount
        paying.append(_Paying(invoice, amount, due, balance))
    return paying


async def _pay(session: AsyncSession, paying: Sequence[_Paying], now: datetime) -> None:
    """payInvoice's balance payments, all at once (as the run's autopay writes them)."""
    if not paying:
        return
    rows = [
        payment_values(
            p.invoice.customer_id,
            Charge(p.amount, p.invoice.currency, PaymentMethod.BALANCE, invoice_id=p.invoice.id),
            now,
        )
        for p in paying
    ]
    made = await writer(session).insert(_PAYMENTS, rows)
    ids = {payment.invoice_id: payment.id for payment in made}
    await post_movements(
        session, [(balance_movement(p.invoice, ids[p.invoice.id], p.amount), now) for p in paying]
    )
    for p in paying:
        await announce_balance_payment(session, p.invoice, ids[p.invoice.id], p.amount, p.balance)
    await mark_paid(session, [p.invoice for p in paying if p.amount == p.due], now)


_LOCK_OPEN = Write(
    select_rows(PromisedPaymentRow, promises)
    .where(
        promises.c.customer_id == bindparam("customer_id"),
        any_of(promises.c.status, "statuses"),
    )
    .order_by(promises.c.id)
    .with_for_update(),
    PromisedPaymentRow,
)
_REPAY = Write(
    update(promises)
    .where(promises.c.id == bindparam("promise_id"))
    .values(
        repaid=bindparam("now_repaid"),
        status=bindparam("now_status"),
        closed_at=bindparam("closed"),
    )
)


async def repay_promised_credit(
    session: AsyncSession, customer: CustomerRow, arrived: Decimal, now: datetime
) -> Decimal:
    """Repays the customer's open promised payment out of `arrived`, money that has just
    landed on their balance (`customer.balance` already holds it); how much it took. The
    caller holds the customer's lock."""
    w = writer(session)
    taken = Decimal("0.00")
    for promise in await w.fetch(_LOCK_OPEN, customer_id=customer.id, statuses=list(OPEN)):
        part = min(promise.outstanding, arrived - taken)
        if part <= 0 or promise.currency != customer.currency:
            continue
        common = {"amount": part, "currency": promise.currency, "customer_id": customer.id}
        await post_movement(
            session,
            [
                Entry(LedgerAccount.CUSTOMER_BALANCE, EntrySide.DEBIT, **common),
                Entry(LedgerAccount.PROMISED_CREDIT, EntrySide.CREDIT, **common),
            ],
            now,
        )
        taken += part
        repaid = promise.repaid + part
        done = repaid == promise.amount
        await w.execute(
            _REPAY,
            promise_id=promise.id,
            now_repaid=repaid,
            now_status=PromisedPaymentStatus.REPAID if done else promise.status,
            closed=now if done else None,
        )
        await events.balance_changed(
            session,
            customer_id=customer.id,
            balance=customer.balance - taken,
            delta=-part,
            currency=promise.currency,
            reason="promised_payment_repaid",
        )
        if done:
            await events.promised_payment(
                session,
                "repaid",
                promised_payment_id=promise.id,
                customer_id=customer.id,
                amount=promise.amount,
                currency=promise.currency,
                repaid=str(repaid),
            )
    if taken:
        await resume_cleared(session, [customer.id], now)
    return taken


@dataclass(frozen=True, slots=True)
class _Due:
    id: int
    customer_id: int
    amount: Decimal
    repaid: Decimal
    currency: str
    expires_at: datetime


# Active promises whose days ran out, in (expires_at, id) order after the last batch's,
# their customers locked with SKIP LOCKED (the customer first, as every money action).
_PICK_EXPIRED = Write(
    select(
        promises.c.id,
        promises.c.customer_id,
        promises.c.amount,
        promises.c.repaid,
        promises.c.currency,
        promises.c.expires_at,
    )
    .join(customers, customers.c.id == promises.c.customer_id)
    .where(
        promises.c.status == literal_column(f"'{PromisedPaymentStatus.ACTIVE.value}'"),
        promises.c.expires_at <= bindparam("now"),
        (promises.c.expires_at > bindparam("after_at"))
        | (
            (promises.c.expires_at == bindparam("after_at"))
            & (promises.c.id > bindparam("after_id", type_=BigInteger))
        ),
    )
    .order_by(promises.c.expires_at, promises.c.id)
    .limit(bindparam("size"))
    .with_for_update(of=customers, skip_locked=True),
    _Due,
)
_EXPIRE = Write(
    update(promises)
    .where(any_of(promises.c.id, "promise_ids"))
    .values(status=PromisedPaymentStatus.EXPIRED)
)


async def expire_promised_payments(
    db: Database, *, clock: Clock = SYSTEM_CLOCK, batch_size: int = BATCH_SIZE
) -> int:
    """Expires the promised payments whose days ran out unrepaid, suspending their
    customers' service; how many it expired."""
    now = clock.now()
    after_at, after_id = datetime.min.replace(tzinfo=UTC), 0
    expired = 0
    while True:
        async with db.transaction() as tx:
            w = writer(tx)
            due = await w.fetch(
                _PICK_EXPIRED, now=now, after_at=after_at, after_id=after_id, size=batch_size
            )
            if due:
                await w.execute(_EXPIRE, promise_ids=[p.id for p in due])
                changed = await w.fetch(
                    SUSPEND_ALL, customer_ids=sorted({p.customer_id for p in due})
                )
                await open_suspensions(tx, changed, SuspensionReason.PROMISE_EXPIRED, now)
                for p in due:
                    await events.promised_payment(
                        tx,
                        "expired",
                        promised_payment_id=p.id,
                        customer_id=p.customer_id,
                        amount=p.amount,
                        currency=p.currency,
                        repaid=str(p.repaid),
                    )
        expired += len(due)
        if len(due) < batch_size:
            return expired
        last = due[-1]
        after_at, after_id = last.expires_at, last.id
