"""The invoice run's dry run: what a run of the period would bill now, writing nothing."""

from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo

from domains.billing.billable import billable_batch
from domains.billing.invoice_run import BATCH_SIZE
from domains.billing.proration import Period
from domains.database import Database


@dataclass(frozen=True, slots=True)
class RunPreview:
    """Customers read (some may have nothing to bill), the invoices and lines a run would
    make, and their amount per currency."""

    customers: int
    invoices: int
    lines: int
    amounts: dict[str, Decimal]


async def preview_invoices(
    db: Database, period: Period, *, zone: ZoneInfo, batch_size: int = BATCH_SIZE
) -> RunPreview:
    """Reads the same batches as the run, on a pooled reader: no transaction, no lock."""
    customers = invoices = lines = 0
    amounts: dict[str, Decimal] = {}
    after = 0
    async with db.read() as reader:
        while batch := await billable_batch(reader, period, zone, after=after, size=batch_size):
            customers += batch.customers
            for bill in batch.bills:
                invoices += 1
                lines += len(bill.items)
                amounts[bill.currency] = amounts.get(bill.currency, Decimal("0.00")) + bill.amount
            after = batch.last_customer_id
    return RunPreview(customers, invoices, lines, amounts)
