"""Issuing invoices: from then on the customer owes the amount (receivable against revenue).

Whatever turns an invoice from draft into issued posts this in the same transaction: debit
the invoice's `receivable`, credit `revenue` (both entries name the invoice), dated when it
was issued. Payments then credit that receivable and refunds debit it back, so it always
holds what is still due: the amount less what was paid net of refunds.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from domains.billing.ledger import Entry, post_movements
from domains.billing.models import EntrySide, InvoiceStatus, LedgerAccount

# Issued and not voided: each has its issuance movement, and its receivable is what is due.
ISSUED = (InvoiceStatus.ISSUED, InvoiceStatus.OVERDUE, InvoiceStatus.PAID)


@dataclass(frozen=True, slots=True)
class IssuedInvoice:
    id: int
    customer_id: int
    amount: Decimal
    currency: str
    issued_at: datetime


async def post_issuance(session: AsyncSession, invoices: Sequence[IssuedInvoice]) -> None:
    """One movement per invoice, all in one statement: loaders issue thousands at once."""
    movements = []
    for invoice in invoices:
        common = {
            "amount": invoice.amount,
            "currency": invoice.currency,
            "customer_id": invoice.customer_id,
            "invoice_id": invoice.id,
        }
        entries = [
            Entry(LedgerAccount.RECEIVABLE, EntrySide.DEBIT, **common),
            Entry(LedgerAccount.REVENUE, EntrySide.CREDIT, **common),
        ]
        movements.append((entries, invoice.issued_at))
    await post_movements(session, movements)
