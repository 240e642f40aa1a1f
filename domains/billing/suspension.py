"""Suspending subscriptions for debt, and resuming them once nothing keeps them suspended.

A subscription is `suspended` (SubscriptionStatus) while one of these holds:
- an invoice billing it (one of its lines, or the invoice's own subscription) is `overdue`
  and has been for more than `KABINET_SUSPEND_AFTER_DAYS` (its due date before today less
  that many days, in the billing time zone), and its customer has no active promised
  payment: `suspend_for_debt`, the worker's;
- its customer's promised payment ran out unrepaid (domains/billing/promised_payment.py).
Only `active` subscriptions are suspended: a paused or cancelled one, and one billed only on
paid or not yet overdue invoices (a prepaid or paid-up one), is left as it is.

It resumes (`resume_cleared`) when its customer owes no expired promised payment and
either has an active one or no `overdue` invoice bills the subscription any more. Every
payment that pays an invoice off goes through `settlement.mark_paid`, which calls it in its
transaction, so balance payments, card webhooks, the run's autopay and promised payments
resume alike; a promised payment's grant and repayment call it too.

Each suspension is a `subscription_suspensions` row, open until the subscription resumes:
the monthly run bills the days around them (domains/billing/billable.py). Events:
`subscription.suspended` and `subscription.resumed` (domains/billing/events.py).

Locks: the customer row first, as every money action takes it (domains/billing/settlement.py).
Payers hold it while they resume; the worker takes it with SKIP LOCKED and leaves a customer
a payer holds for its next pass, so it never waits on a payer.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    CompoundSelect,
    Date,
    Exists,
    Integer,
    bindparam,
    exists,
    literal_column,
    or_,
    select,
    union,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from domains.billing import events
from domains.billing.models import (
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    PromisedPayment,
    PromisedPaymentStatus,
    SubscriptionSuspension,
    SuspensionReason,
)
from domains.clock import SYSTEM_CLOCK, Clock
from domains.customers.models import Customer, Subscription, SubscriptionStatus
from domains.database import Database
from domains.reads import Read, any_of
from domains.writes import RowsInsert, Write, writer

customers = Customer.__table__
subscriptions = Subscription.__table__
invoices = Invoice.__table__
lines = InvoiceLine.__table__
promises = PromisedPayment.__table__
suspensions = SubscriptionSuspension.__table__

BATCH_SIZE = 500

_OVERDUE = literal_column(f"'{InvoiceStatus.OVERDUE.value}'")


@dataclass(frozen=True, slots=True)
class SubscriptionChange:
    """A subscription just suspended or resumed."""

    id: int
    customer_id: int


@dataclass(frozen=True, slots=True)
class _Candidate:
    customer_id: int


def _promise(status: PromisedPaymentStatus) -> Exists:
    return exists().where(
        promises.c.customer_id == customers.c.id, promises.c.status == status.value
    )


def _overdue_billing(customer_ids: str, cutoff: bool) -> CompoundSelect:
    """The subscriptions billed on the customers' overdue invoices (`cutoff`: only those due
    before the bind `cutoff`)."""
    late = [invoices.c.status == _OVERDUE, any_of(invoices.c.customer_id, customer_ids)]
    if cutoff:
        late.append(invoices.c.due_date < bindparam("cutoff", type_=Date))
    on_lines = (
        select(lines.c.subscription_id)
        .join(invoices, invoices.c.id == lines.c.invoice_id)
        .where(*late)
    )
    own = select(invoices.c.subscription_id).where(*late, invoices.c.subscription_id.is_not(None))
    return union(on_lines, own)


# Customers with an active subscription billed on an invoice overdue past the cutoff, in id
# order after `after`: read without locks (the partial index ix_invoices_overdue_due holds
# only overdue invoices), then locked with SKIP LOCKED and checked again.
_CANDIDATES = Read(
    _Candidate,
    select(invoices.c.customer_id)
    .where(
        invoices.c.status == _OVERDUE,
        invoices.c.due_date < bindparam("cutoff", type_=Date),
        invoices.c.customer_id > bindparam("after", type_=BigInteger),
        or_(
            exists().where(
                lines.c.invoice_id == invoices.c.id,
                subscriptions.c.id == lines.c.subscription_id,
                subscriptions.c.status == SubscriptionStatus.ACTIVE,
            ),
            exists().where(
                subscriptions.c.id == invoices.c.subscription_id,
                subscriptions.c.status == SubscriptionStatus.ACTIVE,
            ),
        ),
    )
    .group_by(invoices.c.customer_id)
    .order_by(invoices.c.customer_id)
    .limit(bindparam("size", type_=Integer)),
)
_LOCK_UNPROMISED = Write(
    select(customers.c.id.label("customer_id"))
    .where(
        any_of(customers.c.id, "customer_ids"),
        ~_promise(PromisedPaymentStatus.ACTIVE),
    )
    .order_by(customers.c.id)
    .with_for_update(skip_locked=True),
    _Candidate,
)
_SUSPEND_FOR_DEBT = Write(
    update(subscriptions)
    .where(
        subscriptions.c.status == SubscriptionStatus.ACTIVE,
        subscriptions.c.id.in_(_overdue_billing("customer_ids", cutoff=True)),
    )
    .values(status=SubscriptionStatus.SUSPENDED)
    .returning(subscriptions.c.id, subscriptions.c.customer_id),
    SubscriptionChange,
)
# A promised payment ran out unrepaid: all the customer's service was running on it.
SUSPEND_ALL = Write(
    update(subscriptions)
    .where(
        subscriptions.c.status == SubscriptionStatus.ACTIVE,
        any_of(subscriptions.c.customer_id, "customer_ids"),
    )
    .values(status=SubscriptionStatus.SUSPENDED)
    .returning(subscriptions.c.id, subscriptions.c.customer_id),
    SubscriptionChange,
)
_OPEN = RowsInsert(
    suspensions, ("subscription_id", "customer_id"), shared=("reason", "suspended_at")
)

_RESUME = Write(
    update(subscriptions)
    .where(
        any_of(subscriptions.c.customer_id, "customer_ids"),
        subscriptions.c.status == SubscriptionStatus.SUSPENDED,
        ~exists().where(
            promises.c.customer_id == subscriptions.c.customer_id,
            promises.c.status == PromisedPaymentStatus.EXPIRED.value,
        ),
        or_(
            exists().where(
                promises.c.customer_id == subscriptions.c.customer_id,
                promises.c.status == PromisedPaymentStatus.ACTIVE.value,
            ),
            ~subscriptions.c.id.in_(_overdue_billing("of_customers", cutoff=False)),
        ),
    )
    .values(status=SubscriptionStatus.ACTIVE)
    .returning(subscriptions.c.id, subscriptions.c.customer_id),
    SubscriptionChange,
)
_CLOSE = Write(
    update(suspensions)
    .where(
        any_of(suspensions.c.subscription_id, "subscription_ids"),
        suspensions.c.resumed_at.is_(None),
    )
    .values(resumed_at=bindparam("now"))
)


def suspension_cutoff(today: date, after_days: int) -> date:
    """Invoices due before this day have been overdue more than `after_days` days: one due
    on D is overdue from D+1 and suspends from D+1+after_days."""
    return today - timedelta(days=after_days)


async def suspend_for_debt(
    db: Database,
    *,
    zone: ZoneInfo,
    after_days: int,
    clock: Clock = SYSTEM_CLOCK,
    batch_size: int = BATCH_SIZE,
) -> int:
    """Suspends what debt overdue past `after_days` bills, a batch of customers per
    transaction; how many subscriptions it suspended."""
    if batch_size < 1:
        raise ValueError(f"a batch holds at least one customer, not {batch_size}")
    now = clock.now()
    cutoff = suspension_cutoff(now.astimezone(zone).date(), after_days)
    after, suspended = 0, 0
    while True:
        async with db.transaction() as tx:
            w = writer(tx)
            found = await w.fetch(_CANDIDATES, cutoff=cutoff, after=after, size=batch_size)
            ids = [row.customer_id for row in found]
            locked = await w.fetch(_LOCK_UNPROMISED, customer_ids=ids) if ids else []
            if locked:
                changed = await w.fetch(
                    _SUSPEND_FOR_DEBT,
                    customer_ids=[row.customer_id for row in locked],
                    cutoff=cutoff,
                )
                await open_suspensions(tx, changed, SuspensionReason.DEBT, now)
                suspended += len(changed)
        if len(found) < batch_size:
            return suspended
        after = ids[-1]


async def open_suspensions(
    session: AsyncSession,
    changed: Sequence[SubscriptionChange],
    reason: SuspensionReason,
    now: datetime,
) -> None:
    """Dates the subscriptions just suspended and says so, in their transaction."""
    if not changed:
        return
    await writer(session).insert(
        _OPEN,
        [{"subscription_id": s.id, "customer_id": s.customer_id} for s in changed],
        reason=reason,
        suspended_at=now,
    )
    for s in changed:
        await events.subscription_suspended(
            session, subscription_id=s.id, customer_id=s.customer_id, reason=reason.value
        )


async def resume_cleared(
    session: AsyncSession, customer_ids: Sequence[int], now: datetime
) -> list[SubscriptionChange]:
    """Resumes the customers' suspended subscriptions that nothing keeps suspended any more
    (the module's rule). The caller holds the customers' locks."""
    if not customer_ids:
        return []
    ids = sorted(set(customer_ids))
    w = writer(session)
    resumed = await w.fetch(_RESUME, customer_ids=ids, of_customers=ids)
    if not resumed:
        return []
    await w.execute(_CLOSE, subscription_ids=[s.id for s in resumed], now=now)
    for s in resumed:
        await events.subscription_resumed(session, subscription_id=s.id, customer_id=s.customer_id)
    return resumed
