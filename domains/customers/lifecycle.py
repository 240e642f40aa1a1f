"""The worker's daily duties to the catalogue and subscriptions: what has come by today's
date in the billing zone takes effect (a dated price, a scheduled tariff change, a pause's
first day and its end). Each part is idempotent, so every tick may run them all."""

from dataclasses import dataclass

from domains.clock import SYSTEM_CLOCK, Clock
from domains.customers.pause import apply_due_pauses
from domains.customers.tariff_admin import apply_due_prices
from domains.customers.tariff_change import apply_due_tariff_changes
from domains.customers.terms import LifecycleTerms
from domains.database import Database


@dataclass(frozen=True, slots=True)
class LifecyclePass:
    prices: int
    tariff_changes: int
    paused: int
    resumed: int


async def run_lifecycle(
    db: Database, *, terms: LifecycleTerms, clock: Clock = SYSTEM_CLOCK
) -> LifecyclePass:
    prices = await apply_due_prices(db, terms=terms, clock=clock)
    changes = await apply_due_tariff_changes(db, terms=terms, clock=clock)
    paused, resumed = await apply_due_pauses(db, terms=terms, clock=clock)
    return LifecyclePass(prices, changes, paused, resumed)
