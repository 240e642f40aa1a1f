"""Billing's domain events, written to the outbox in the transaction of their cause.

Every event is an outbox row: `id` (uuid, the event id), `type`, `occurred_at` (UTC),
`subject` `customer:<id>` (the Kafka key: one customer's events stay in order) and a JSON
`payload`. Payload version 1 of each type (amounts are decimal strings, ids integers):

- `payment.created`: `{version, payment_id, invoice_id, customer_id, amount, currency,
  method, status}`, a payment that moved money; `invoice_id` is null for a top-up of the
  balance (a card payment through the provider, credited when its webhook confirms it).
- `payment.refunded`: `{version, payment_id, refund_id, invoice_id, customer_id, amount,
  refunded_amount, currency, reason}`; `amount` is this refund, `refunded_amount` the total.
- `invoice.paid`: `{version, invoice_id, customer_id, number, amount, currency}`, when the
  invoice's payments first cover it (again after a refund uncovered it).
- `invoice.voided`: `{version, invoice_id, customer_id, number, amount, currency, reason}`,
  when an admin voids it (domains/billing/invoice_void.py): it is owed no more.
- `balance.changed`: `{version, customer_id, balance, delta, currency, reason}` with
  `reason` one of `payment`, `refund`, `top_up`.
- `invoice.issued`: `{version, invoice_id, customer_id, number, period_start, period_end,
  amount, currency, due_date, line_count, lines}`, when the monthly run issues an invoice;
  dates are ISO `YYYY-MM-DD`, `lines` its lines in order, each `{subscription_id,
  tariff_id, days, amount, description}`.
- `invoice.overdue`: `{version, invoice_id, customer_id, number, amount, currency,
  due_date}`, once, when an issued invoice is still unpaid the day after its due date in
  the billing time zone (domains/billing/invoice_overdue.py); `amount` is the invoice's.
- `invoice.payment_reminder`: `{version, invoice_id, customer_id, number, amount_due,
  currency, due_date, offset_days}`, once per unpaid invoice and offset of
  `KABINET_DUNNING_REMINDERS` (domains/billing/dunning.py); `offset_days` is negative
  before the due date, `amount_due` what is left to pay.
- `subscription.suspended`: `{version, subscription_id, customer_id, reason}` with `reason`
  `debt` or `promise_expired` (domains/billing/suspension.py).
- `subscription.resumed`: `{version, subscription_id, customer_id}`, in the transaction of
  the payment or promised payment that cleared it.
- `promised_payment.activated`: `{version, promised_payment_id, customer_id, amount,
  currency, expires_at}`; `promised_payment.repaid` and `promised_payment.expired`:
  `{version, promised_payment_id, customer_id, amount, repaid, currency}`
  (domains/billing/promised_payment.py).
"""

from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from domains.events.subject import CUSTOMER
from domains.outbox import record_event

VERSION = 1


async def _record(session: AsyncSession, type: str, customer_id: int, **data: Any) -> None:
    payload = {"version": VERSION, "customer_id": customer_id}
    for name, value in data.items():
        payload[name] = str(value) if isinstance(value, Decimal) else value
    await record_event(session, type, CUSTOMER.of(customer_id), payload)


async def payment_created(
    session: AsyncSession,
    *,
    payment_id: int,
    invoice_id: int | None,
    customer_id: int,
    amount: Decimal,
    currency: str,
    method: str,
    status: str,
) -> None:
    await _record(
        session,
        "payment.created",
        customer_id,
        payment_id=payment_id,
        invoice_id=invoice_id,
        amount=amount,
        currency=currency,
        method=method,
        status=status,
    )


async def payment_refunded(
    session: AsyncSession,
    *,
    payment_id: int,
    refund_id: int,
    invoice_id: int,
    customer_id: int,
    amount: Decimal,
    refunded_amount: Decimal,
    currency: str,
    reason: str,
) -> None:
    await _record(
        session,
        "payment.refunded",
        customer_id,
        payment_id=payment_id,
        refund_id=refund_id,
        invoice_id=invoice_id,
        amount=amount,
        refunded_amount=refunded_amount,
        currency=currency,
        reason=reason,
    )


async def invoice_paid(
    session: AsyncSession,
    *,
    invoice_id: int,
    customer_id: int,
    number: str,
    amount: Decimal,
    currency: str,
) -> None:
    await _record(
        session,
        "invoice.paid",
        customer_id,
        invoice_id=invoice_id,
        number=number,
        amount=amount,
        currency=currency,
    )


async def invoice_voided(
    session: AsyncSession,
    *,
    invoice_id: int,
    customer_id: int,
    number: str,
    amount: Decimal,
    currency: str,
    reason: str,
) -> None:
    await _record(
        session,
        "invoice.voided",
        customer_id,
        invoice_id=invoice_id,
        number=number,
        amount=amount,
        currency=currency,
        reason=reason,
    )


async def balance_changed(
    session: AsyncSession,
    *,
    customer_id: int,
    balance: Decimal,
    delta: Decimal,
    currency: str,
    reason: str,
) -> None:
    await _record(
        session,
        "balance.changed",
        customer_id,
        balance=balance,
        delta=delta,
        currency=currency,
        reason=reason,
    )


async def invoice_issued(
    session: AsyncSession,
    *,
    invoice_id: int,
    customer_id: int,
    number: str,
    period_start: date,
    period_end: date,
    amount: Decimal,
    currency: str,
    due_date: date,
    lines: list[dict[str, Any]],
) -> None:
    await _record(
        session,
        "invoice.issued",
        customer_id,
        invoice_id=invoice_id,
        number=number,
        period_start=period_start.isoformat(),
        period_end=period_end.isoformat(),
        amount=amount,
        currency=currency,
        due_date=due_date.isoformat(),
        line_count=len(lines),
        lines=lines,
    )


async def invoice_overdue(
    session: AsyncSession,
    *,
    invoice_id: int,
    customer_id: int,
    number: str,
    amount: Decimal,
    currency: str,
    due_date: date,
) -> None:
    await _record(
        session,
        "invoice.overdue",
        customer_id,
        invoice_id=invoice_id,
        number=number,
        amount=amount,
        currency=currency,
        due_date=due_date.isoformat(),
    )


async def invoice_payment_reminder(
    session: AsyncSession,
    *,
    invoice_id: int,
    customer_id: int,
    number: str,
    amount_due: Decimal,
    currency: str,
    due_date: date,
    offset_days: int,
) -> None:
    await _record(
        session,
        "invoice.payment_reminder",
        customer_id,
        invoice_id=invoice_id,
        number=number,
        amount_due=amount_due,
        currency=currency,
        due_date=due_date.isoformat(),
        offset_days=offset_days,
    )


async def subscription_suspended(
    session: AsyncSession, *, subscription_id: int, customer_id: int, reason: str
) -> None:
    await _record(
        session,
        "subscription.suspended",
        customer_id,
        subscription_id=subscription_id,
        reason=reason,
    )


async def subscription_resumed(
    session: AsyncSession, *, subscription_id: int, customer_id: int
) -> None:
    await _record(session, "subscription.resumed", customer_id, subscription_id=subscription_id)


async def promised_payment(
    session: AsyncSession,
    type: str,
    *,
    promised_payment_id: int,
    customer_id: int,
    amount: Decimal,
    currency: str,
    **more: Any,
) -> None:
    """`promised_payment.activated`, `.repaid` or `.expired`."""
    await _record(
        session,
        f"promised_payment.{type}",
        customer_id,
        promised_payment_id=promised_payment_id,
        amount=amount,
        currency=currency,
        **more,
    )
