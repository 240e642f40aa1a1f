"""Voiding an invoice (admins): it stops being owed, and nothing is deleted.

An issued or overdue invoice no payment keeps (none settled net of refunds, none pending)
gets the reverse of its issuance (domains/billing/invoice_issue.py): credit its
receivable, debit revenue, its whole amount, dated now. Its receivable is then zero, what
`amount_due` and reconcile say a void invoice owes. A draft has no issuance to reverse.
The status becomes `void`, with who, when and why on the row, and `invoice.voided` says so;
the subscriptions its debt had suspended resume in the same transaction, if nothing else
keeps them suspended (domains/billing/suspension.py).

Locks in the documented order: the customer, then the invoice.
"""

from sqlalchemy import bindparam, select, update

from domains.billing import events
from domains.billing.errors import InvoiceNotVoidable
from domains.billing.invoice import InvoiceRow
from domains.billing.ledger import Entry, post_movement
from domains.billing.models import (
    EntrySide,
    Invoice,
    InvoiceStatus,
    LedgerAccount,
    Payment,
    PaymentStatus,
)
from domains.billing.settlement import lock_customer, lock_invoice
from domains.billing.suspension import resume_cleared
from domains.clock import SYSTEM_CLOCK, Clock
from domains.database import Database
from domains.errors import Forbidden, InvalidInput, NotFound
from domains.identity.models import Role
from domains.identity.viewer import Viewer
from domains.reads import row_columns
from domains.writes import Write, writer

invoices = Invoice.__table__
payments = Payment.__table__

VOIDABLE = (InvoiceStatus.DRAFT, InvoiceStatus.ISSUED, InvoiceStatus.OVERDUE)
MAX_REASON = 500

_OWNER = select(invoices.c.customer_id).where(invoices.c.id == bindparam("invoice_id"))
# A payment that keeps money on it (settled and not wholly refunded), or may yet.
_HELD = select(payments.c.id).where(
    payments.c.invoice_id == bindparam("invoice_id"),
    (payments.c.status == PaymentStatus.PENDING)
    | (
        (payments.c.status == PaymentStatus.SUCCEEDED)
        & (payments.c.amount > payments.c.refunded_amount)
    ),
)
_VOID = Write(
    update(invoices)
    .where(invoices.c.id == bindparam("invoice_id"))
    .values(
        status=InvoiceStatus.VOID,
        voided_at=bindparam("now"),
        voided_by=bindparam("by"),
        void_reason=bindparam("reason"),
    )
    .returning(*row_columns(InvoiceRow, invoices)),
    InvoiceRow,
)


async def void_invoice(
    db: Database, viewer: Viewer, invoice_id: int, reason: str, *, clock: Clock = SYSTEM_CLOCK
) -> InvoiceRow:
    if viewer.role is not Role.ADMIN:
        raise Forbidden("only admins void invoices")
    why = " ".join(reason.split())
    if not 1 <= len(why) <= MAX_REASON:
        raise InvalidInput(f"reason is 1 to {MAX_REASON} characters")
    async with db.transaction() as tx:
        customer_id = (await tx.execute(_OWNER, {"invoice_id": invoice_id})).scalar_one_or_none()
        if customer_id is None or await lock_customer(tx, customer_id) is None:
            raise NotFound("invoice")
        invoice = await lock_invoice(tx, invoice_id)
        if invoice is None or invoice.customer_id != customer_id:
            raise NotFound("invoice")
        if invoice.status not in VOIDABLE:
            raise InvoiceNotVoidable(f"invoice {invoice.number} is {invoice.status}")
        if (await tx.execute(_HELD, {"invoice_id": invoice_id})).first() is not None:
            raise InvoiceNotVoidable(
                f"invoice {invoice.number} has a payment on it: refund it before voiding"
            )
        now = clock.now()
        if invoice.status is not InvoiceStatus.DRAFT:
            common = {
                "amount": invoice.amount,
                "currency": invoice.currency,
                "customer_id": customer_id,
                "invoice_id": invoice.id,
            }
            await post_movement(
                tx,
                [
                    Entry(LedgerAccount.RECEIVABLE, EntrySide.CREDIT, **common),
                    Entry(LedgerAccount.REVENUE, EntrySide.DEBIT, **common),
                ],
                now,
            )
        [voided] = await writer(tx).fetch(
            _VOID, invoice_id=invoice_id, now=now, by=viewer.user_id, reason=why
        )
        await events.invoice_voided(
            tx,
            invoice_id=invoice.id,
            customer_id=customer_id,
            number=invoice.number,
            amount=invoice.amount,
            currency=invoice.currency,
            reason=why,
        )
        await resume_cleared(tx, [customer_id], now)
    return voided
