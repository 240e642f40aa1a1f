"""The customers domain's events, written to the outbox in the transaction of their cause.

Subject `customer:<id>`, as billing's, so one customer's events stay in order. Payload
version 1 (ids integers, dates ISO `YYYY-MM-DD`, prices decimal strings):

- `tariff.changed`: `{version, customer_id, subscription_id, from_tariff_id, to_tariff_id,
  effective_from, scheduled}` when a change is made (`scheduled` true for a downgrade at
  the period's end) and again when a scheduled one takes effect (`scheduled` false); a
  cancelled schedule is `tariff.change_cancelled` with the same fields.
- `tariff.price_changed`: `{version, tariff_id, monthly_price, currency, effective_from}`,
  subject `tariff:<id>`.
- `subscription.paused`: `{version, customer_id, subscription_id, pause_id, first_day,
  until}` when a pause begins (its first day has come).
- `subscription.resumed`: `{version, customer_id, subscription_id, reason: "pause", pause_id,
  resumed_on}` when it ends, on `until` or early; billing's `subscription.resumed` after a
  suspension has no `reason`.
"""

from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from domains.events.subject import CUSTOMER, SubjectKind
from domains.outbox import record_event

VERSION = 1
TARIFF = SubjectKind("tariff")


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


async def record(session: AsyncSession, type: str, customer_id: int, **data: Any) -> None:
    payload = {"version": VERSION, "customer_id": customer_id}
    payload.update({name: _plain(value) for name, value in data.items()})
    await record_event(session, type, CUSTOMER.of(customer_id), payload)


async def tariff_price_changed(
    session: AsyncSession,
    *,
    tariff_id: int,
    monthly_price: Decimal,
    currency: str,
    effective_from: date,
) -> None:
    payload = {
        "version": VERSION,
        "tariff_id": tariff_id,
        "monthly_price": str(monthly_price),
        "currency": currency,
        "effective_from": effective_from.isoformat(),
    }
    await record_event(session, "tariff.price_changed", TARIFF.of(tariff_id), payload)
