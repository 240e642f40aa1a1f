"""voidInvoice: a reversing ledger movement, never a delete; reconcile stays clean; a paid
invoice or one with a payment on it is refused with nothing written (SQLite, PostgreSQL)."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select

from domains.billing.errors import InvoiceNotVoidable
from domains.billing.invoice_void import void_invoice
from domains.billing.models import Invoice, InvoiceStatus, LedgerAccount, Transaction
from domains.billing.reconcile import reconcile
from domains.billing.refund_payment import refund_payment
from domains.clock import ManualClock
from domains.database import Database
from domains.errors import Forbidden, InvalidInput, NotFound
from domains.identity.models import Role
from domains.identity.viewer import Viewer
from tests.test_payments import TABLES, events_of, make_admin, make_customer, pay, snapshot

transactions = Transaction.__table__
NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


async def _ledger(db: Database, invoice_id: int) -> list[tuple[LedgerAccount, str, Decimal]]:
    async with db.connect() as conn:
        rows = await conn.execute(
            select(transactions.c.account, transactions.c.type, transactions.c.amount)
            .where(transactions.c.invoice_id == invoice_id)
            .order_by(transactions.c.id)
        )
        return [(row.account, row.type.value, row.amount) for row in rows]


async def test_a_void_reverses_the_issuance_and_reconciles(db: Database) -> None:
    admin = await make_admin(db)
    customer, [invoice, kept] = await make_customer(
        db, "0", [("40.00", InvoiceStatus.OVERDUE), ("60.00", InvoiceStatus.ISSUED)]
    )
    voided = await void_invoice(db, admin, invoice, "  billed twice ", clock=ManualClock(NOW))
    assert (voided.status, voided.amount) == (InvoiceStatus.VOID, Decimal("40.00"))
    async with db.connect() as conn:
        row = (await conn.execute(select(Invoice).where(Invoice.id == invoice))).one()
    assert (row.voided_at, row.voided_by, row.void_reason) == (NOW, admin.user_id, "billed twice")
    assert await _ledger(db, invoice) == [
        (LedgerAccount.RECEIVABLE, "debit", Decimal("40.00")),
        (LedgerAccount.REVENUE, "credit", Decimal("40.00")),
        (LedgerAccount.RECEIVABLE, "credit", Decimal("40.00")),
        (LedgerAccount.REVENUE, "debit", Decimal("40.00")),
    ]
    assert "invoice.voided" in await events_of(db, customer.customer_id)
    assert await reconcile(db) == []
    with pytest.raises(InvoiceNotVoidable):  # once
        await void_invoice(db, admin, invoice, "again")
    assert len(await _ledger(db, kept)) == 2  # the other invoice is untouched


async def test_paid_or_partly_paid_invoices_are_refused_until_refunded(db: Database) -> None:
    admin = await make_admin(db)
    customer, [paid, part] = await make_customer(
        db, "500.00", [("100.00", InvoiceStatus.ISSUED), ("300.00", InvoiceStatus.ISSUED)]
    )
    await pay(db, customer, paid, None, "k-paid")
    partly = await pay(db, customer, part, "50.00", "k-part")
    before = await snapshot(db, TABLES)
    for invoice_id in (paid, part):
        with pytest.raises(InvoiceNotVoidable):
            await void_invoice(db, admin, invoice_id, "wrong")
    assert await snapshot(db, TABLES) == before
    await refund_payment(
        db,
        admin,
        payment_id=partly.payment_id,
        amount=Decimal("50.00"),
        reason="refund before void",
        idempotency_key="r-part",
    )
    voided = await void_invoice(db, admin, part, "wrong tariff")
    assert voided.status is InvoiceStatus.VOID
    assert await reconcile(db) == []


async def test_refusals_write_nothing(db: Database) -> None:
    admin = await make_admin(db)
    customer, [invoice] = await make_customer(db, "0", [("40.00", InvoiceStatus.ISSUED)])
    before = await snapshot(db, TABLES)
    with pytest.raises(Forbidden):
        await void_invoice(db, Viewer(admin.user_id, Role.OPERATOR), invoice, "no")
    with pytest.raises(Forbidden):
        await void_invoice(db, customer, invoice, "mine")
    with pytest.raises(InvalidInput):
        await void_invoice(db, admin, invoice, "   ")
    with pytest.raises(NotFound):
        await void_invoice(db, admin, invoice + 1000, "none")
    assert await snapshot(db, TABLES) == before
