"""Reading the invoice run's records: by id, and every run newest first (staff)."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from domains.billing.models import BillingRun, BillingRunState
from domains.keyset import Ordering, Page, PageRead, Window
from domains.reads import Read, Reader, any_of, select_rows

runs = BillingRun.__table__


@dataclass(frozen=True, slots=True)
class BillingRunRow:
    id: int
    period_start: date
    period_end: date
    state: BillingRunState
    started_at: datetime
    finished_at: datetime | None
    invoices: int
    lines: int
    amount: Decimal
    autopaid: int


# Newest first; ids grow with time, so the id alone is a stable keyset.
BILLING_RUN_ORDER = Ordering((runs.c.id,), descending=True)

BILLING_RUN_PAGES = PageRead(BillingRunRow, select_rows(BillingRunRow, runs), BILLING_RUN_ORDER)
BILLING_RUNS_BY_ID = Read(
    BillingRunRow, select_rows(BillingRunRow, runs).where(any_of(runs.c.id, "ids"))
)


async def billing_run_page(reader: Reader, window: Window) -> Page[BillingRunRow]:
    return await BILLING_RUN_PAGES.page(reader, window)


async def billing_runs_by_ids(reader: Reader, ids: Sequence[int]) -> dict[int, BillingRunRow]:
    return {row.id: row for row in await reader.fetch(BILLING_RUNS_BY_ID, ids=ids)}
