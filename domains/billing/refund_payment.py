"""Refunding a payment, wholly or in part, to the customer's account balance (admins only),
once per idempotency key: an admin retrying after a timeout gets the first refund back.

The refund is a reversing movement (debit the invoice's receivable, credit the customer
balance); the payment keeps its entries and gains `refunded_amount`. An invoice the
payments no longer cover goes back to issued (the overdue marker says when it is overdue,
in the billing zone, with its event). The key is
the payment's customer's (`domains.billing.idempotency`), claimed under that customer's
lock, as a payment claims its key.
"""

from dataclasses import dataclass, replace
from decimal import Decimal

from sqlalchemy import bindparam, insert, update

from domains.billing import events
from domains.billing.errors import InvalidAmount, PaymentNotRefundable, RefundExceedsPayment
from domains.billing.idempotency import (
    bind_key,
    check_key,
    claim_key,
    replayed,
    request_fingerprint,
)
from domains.billing.invoice import InvoiceRow
from domains.billing.ledger import Entry, post_movement
from domains.billing.models import (
    EntrySide,
    InvoiceStatus,
    LedgerAccount,
    Payment,
    PaymentStatus,
    Refund,
)
from domains.billing.payment import PaymentRow
from domains.billing.settlement import (
    SETTLED,
    PaymentOwner,
    amount_due,
    invoice_payments,
    invoices,
    lock_customer,
    lock_invoice,
    lock_payment,
    valid_amount,
)
from domains.clock import utcnow
from domains.customers.customer import CustomerRow
from domains.database import Database
from domains.errors import Forbidden, InvalidInput, NotFound
from domains.identity.models import Role
from domains.identity.viewer import Viewer
from domains.reads import Read, select_rows
from domains.writes import Inserted, Write, writer

payments = Payment.__table__
refunds = Refund.__table__

_OWNER = Read(
    PaymentOwner,
    select_rows(PaymentOwner, payments).where(payments.c.id == bindparam("payment_id")),
)
_INSERT_REFUND = Write(
    insert(refunds)
    .values(
        {
            name: bindparam(name)
            for name in ("payment_id", "amount", "currency", "reason", "created_by", "created_at")
        }
    )
    .returning(refunds.c.id),
    Inserted,
)
_REFUND_PAYMENT = Write(
    update(payments)
    .where(payments.c.id == bindparam("refunded_payment"))
    .values(refunded_amount=bindparam("refunded_amount"), status=bindparam("status"))
)
_UNPAY_INVOICE = Write(
    update(invoices)
    .where(invoices.c.id == bindparam("invoice_id"))
    .values(status=bindparam("status"))
)

MAX_REASON_LENGTH = 500


@dataclass(frozen=True, slots=True)
class RefundResult:
    refund_id: int
    payment_id: int
    invoice_id: int
    customer_id: int
    # True when the key had already refunded: this answer repeats the first one.
    replayed: bool = False
    # The rows as the refund committed them (the answer needs no read); None when replayed.
    payment: PaymentRow | None = None
    invoice: InvoiceRow | None = None
    customer: CustomerRow | None = None


async def refund_payment(
    db: Database,
    viewer: Viewer,
    *,
    payment_id: int,
    amount: Decimal,
    reason: str,
    idempotency_key: str,
) -> RefundResult:
    if viewer.role is not Role.ADMIN:
        raise Forbidden("only an admin refunds payments")
    check_key(idempotency_key)
    if not valid_amount(amount):
        raise InvalidAmount("the amount is positive, with at most two decimals")
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON_LENGTH:
        raise InvalidInput(f"a reason is 1 to {MAX_REASON_LENGTH} characters")
    fingerprint = request_fingerprint(
        {"amount": amount, "kind": "refund", "payment_id": payment_id, "reason": reason}
    )
    async with db.transaction() as session:
        tx = writer(session)
        found = await tx.fetch(_OWNER, payment_id=payment_id)
        owner = found[0] if found else None
        if owner is None:
            raise NotFound("payment")
        if owner.invoice_id is None:
            raise PaymentNotRefundable("a top-up paid no invoice: there is nothing to refund")
        customer = await lock_customer(session, owner.customer_id)
        if customer is None:
            raise NotFound("payment")
        now = utcnow()
        if not await claim_key(session, customer.id, idempotency_key, fingerprint, now):
            answer = await replayed(session, customer.id, idempotency_key, fingerprint)
            return RefundResult(
                answer.refund_id, payment_id, owner.invoice_id, customer.id, replayed=True
            )
        invoice = await lock_invoice(session, owner.invoice_id)
        if invoice is None:
            raise NotFound("payment")
        payment = await lock_payment(session, payment_id)
        if payment.status not in SETTLED:
            raise PaymentNotRefundable(f"a {payment.status} payment moved no money")
        refundable = payment.amount - payment.refunded_amount
        if amount > refundable:
            raise RefundExceedsPayment(f"at most {refundable} {payment.currency} is refundable")

        [refund] = await tx.fetch(
            _INSERT_REFUND,
            payment_id=payment_id,
            amount=amount,
            currency=payment.currency,
            reason=reason,
            created_by=viewer.user_id,
            created_at=now,
        )
        refund_id = refund.id
        await bind_key(session, customer.id, idempotency_key, refund_id=refund_id)
        refunded = payment.refunded_amount + amount
        payment = replace(
            payment,
            refunded_amount=refunded,
            status=PaymentStatus.REFUNDED if refunded == payment.amount else payment.status,
        )
        await tx.execute(
            _REFUND_PAYMENT,
            refunded_payment=payment_id,
            refunded_amount=payment.refunded_amount,
            status=payment.status,
        )
        common = {
            "amount": amount,
            "currency": payment.currency,
            "customer_id": customer.id,
            "payment_id": payment_id,
        }
        await post_movement(
            session,
            [
                Entry(LedgerAccount.RECEIVABLE, EntrySide.DEBIT, invoice_id=invoice.id, **common),
                Entry(LedgerAccount.CUSTOMER_BALANCE, EntrySide.CREDIT, **common),
            ],
            now,
        )
        if invoice.status is InvoiceStatus.PAID and (
            amount_due(invoice, await invoice_payments(session, invoice.id)) > 0
        ):
            # Issued again; whether it is overdue is the overdue marker's to say, on the
            # billing zone's day and with its event (domains/billing/invoice_overdue.py).
            invoice = replace(invoice, status=InvoiceStatus.ISSUED)
            await tx.execute(_UNPAY_INVOICE, invoice_id=invoice.id, status=invoice.status)
        await events.payment_refunded(
            session,
            payment_id=payment_id,
            refund_id=refund_id,
            invoice_id=invoice.id,
            customer_id=customer.id,
            amount=amount,
            refunded_amount=refunded,
            currency=payment.currency,
            reason=reason,
        )
        await events.balance_changed(
            session,
            customer_id=customer.id,
            balance=customer.balance + amount,
            delta=amount,
            currency=payment.currency,
            reason="refund",
        )
        return RefundResult(
            refund_id,
            payment_id,
            invoice.id,
            customer.id,
            payment=payment,
            invoice=invoice,
            customer=replace(customer, balance=customer.balance + amount),
        )
