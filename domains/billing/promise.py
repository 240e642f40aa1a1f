"""Reading promised payments: a customer's, newest first."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from domains.billing.models import PromisedPayment, PromisedPaymentStatus
from domains.reads import Read, Reader, any_of, group_by, select_rows

promises = PromisedPayment.__table__


@dataclass(frozen=True, slots=True)
class PromisedPaymentRow:
    id: int
    customer_id: int
    amount: Decimal
    repaid: Decimal
    currency: str
    status: PromisedPaymentStatus
    created_by: int
    created_at: datetime
    expires_at: datetime
    closed_at: datetime | None

    @property
    def outstanding(self) -> Decimal:
        """What is still owed of it: its part of the `promised_credit` account."""
        return self.amount - self.repaid


PROMISES_BY_CUSTOMER_ID = Read(
    PromisedPaymentRow,
    select_rows(PromisedPaymentRow, promises)
    .where(any_of(promises.c.customer_id, "customer_ids"))
    .order_by(promises.c.customer_id, promises.c.created_at.desc(), promises.c.id.desc()),
)


async def promises_by_customer_ids(
    reader: Reader, customer_ids: Sequence[int]
) -> dict[int, list[PromisedPaymentRow]]:
    rows = await reader.fetch(PROMISES_BY_CUSTOMER_ID, customer_ids=customer_ids)
    return group_by(rows, "customer_id", customer_ids)
