"""`reconcile` names the rows of each broken invariant; the demo and migrated data are clean.

Every test gets a migrated database of its own (conftest's `db`, SQLite and PostgreSQL),
breaks one invariant with a raw SQL statement, and expects exactly the findings that break
causes.
"""

from decimal import Decimal

from sqlalchemy import func, select, text

from domains.billing.models import InvoiceStatus, Transaction
from domains.billing.reconcile import reconcile
from domains.billing.refund_payment import refund_payment
from domains.database import Database
from gateway.demo import load_bulk, load_demo
from migrations import downgrade, upgrade
from tests.test_payments import make_admin, make_customer, pay

transactions = Transaction.__table__


async def found(db: Database) -> set[tuple[str, str]]:
    return {(problem.check, problem.row) for problem in await reconcile(db)}


async def execute(db: Database, sql: str, **params: object) -> None:
    async with db.transaction() as session:
        result = await session.execute(text(sql), params)
        assert result.rowcount > 0, sql  # the break must hit a row, or the test proves nothing


async def test_demo_and_bulk_data_reconcile(db: Database):
    assert await load_demo(db, customers=8)
    await load_bulk(db, customers=20, invoices_per_customer=3, seed=5)
    assert await found(db) == set()


async def test_upgrade_posts_issuance_missing_and_downgrade_removes_it(db_url: str):
    db = Database(db_url)
    try:
        # alice and bob only: no promised payment, which 0017 will not downgrade past.
        assert await load_demo(db, customers=2)
        async with db.connect() as conn:
            entries = await conn.scalar(select(func.count()).select_from(transactions))
            invoice_ids = set(await conn.scalars(text("SELECT id FROM invoices")))
    finally:
        await db.dispose()

    downgrade(db_url, "0005")  # a database from before issuance was posted
    db = Database(db_url)
    try:
        # Today's reconcile reads today's schema: at 0005, count the postings instead.
        async with db.connect() as conn:
            left = await conn.scalar(select(func.count()).select_from(transactions))
            issued = await conn.scalar(
                select(func.count())
                .select_from(transactions)
                .where(transactions.c.invoice_id.is_not(None), transactions.c.payment_id.is_(None))
            )
        assert left == entries - 2 * len(invoice_ids)
        assert issued == 0
    finally:
        await db.dispose()

    upgrade(db_url)
    db = Database(db_url)
    try:
        assert await found(db) == set()
        async with db.connect() as conn:
            assert await conn.scalar(select(func.count()).select_from(transactions)) == entries
    finally:
        await db.dispose()


async def test_names_an_issued_invoice_without_its_posting(db: Database):
    _, [invoice, _] = await make_customer(
        db, "0", [("40.00", InvoiceStatus.ISSUED), ("60.00", InvoiceStatus.ISSUED)]
    )
    assert await found(db) == set()
    await execute(
        db, "DELETE FROM transactions WHERE invoice_id = :id AND payment_id IS NULL", id=invoice
    )
    assert await found(db) == {("invoice_receivable", f"invoice:{invoice}")}


async def test_names_a_voided_invoice_still_owed(db: Database):
    _, [invoice] = await make_customer(db, "0", [("40.00", InvoiceStatus.ISSUED)])
    await execute(db, "UPDATE invoices SET status = 'void' WHERE id = :id", id=invoice)
    assert await found(db) == {("invoice_receivable", f"invoice:{invoice}")}


async def test_names_a_receivable_that_a_payment_did_not_credit(db: Database):
    viewer, [invoice] = await make_customer(db, "100.00", [("40.00", InvoiceStatus.ISSUED)])
    payment = (await pay(db, viewer, invoice, "15.00", "part")).payment_id
    assert await found(db) == set()
    # The payment's credit lands on the balance instead: the movement still balances.
    await execute(
        db,
        "UPDATE transactions SET account = 'customer_balance', invoice_id = NULL"
        " WHERE payment_id = :id AND account = 'receivable'",
        id=payment,
    )
    assert await found(db) == {
        ("settled_payment_entries", f"payment:{payment}"),
        ("invoice_receivable", f"invoice:{invoice}"),
        ("balance_mismatch", f"customer:{viewer.customer_id}"),
    }


async def test_names_a_succeeded_payment_without_entries(db: Database):
    viewer, _ = await make_customer(db, "10.00", [])
    await execute(
        db,
        "INSERT INTO payments (customer_id, amount, currency, method, status,"
        " refunded_amount, created_at)"
        " VALUES (:customer, 25.00, 'RUB', 'card', 'succeeded', 0, CURRENT_TIMESTAMP)",
        customer=viewer.customer_id,
    )
    async with db.connect() as conn:
        payment = await conn.scalar(text("SELECT max(id) FROM payments"))
    assert await found(db) == {
        ("settled_payment_entries", f"payment:{payment}"),
        ("provider_clearing", f"payment:{payment}"),
    }


async def test_names_provider_clearing_that_no_settled_card_payment_explains(db: Database):
    """The acquirer owes what it captured: a clearing entry of no payment, or of a balance
    payment, and a card payment whose clearing is not its amount are all named."""
    viewer, [invoice] = await make_customer(db, "100.00", [("40.00", InvoiceStatus.ISSUED)])
    by_balance = (await pay(db, viewer, invoice, "10.00", "balance")).payment_id
    assert await found(db) == set()
    async with db.connect() as conn:
        top_up = await conn.scalar(
            text("SELECT id FROM payments WHERE invoice_id IS NULL AND customer_id = :c"),
            {"c": viewer.customer_id},
        )
        clearing, balance_debit = [
            await conn.scalar(
                text("SELECT id FROM transactions WHERE payment_id = :p AND account = :a"),
                {"p": payment, "a": account},
            )
            for payment, account in (
                (top_up, "provider_clearing"),
                (by_balance, "customer_balance"),
            )
        ]
    await execute(db, "UPDATE transactions SET payment_id = NULL WHERE id = :id", id=clearing)
    await execute(
        db, "UPDATE transactions SET account = 'provider_clearing' WHERE id = :id", id=balance_debit
    )
    assert {(check, row) for check, row in await found(db) if check == "provider_clearing"} == {
        ("provider_clearing", f"entry:{clearing}"),
        ("provider_clearing", f"entry:{balance_debit}"),
        ("provider_clearing", f"payment:{top_up}"),
    }


async def test_names_a_failed_payment_with_entries(db: Database):
    viewer, [invoice] = await make_customer(db, "100.00", [("40.00", InvoiceStatus.ISSUED)])
    payment = (await pay(db, viewer, invoice, None, "all")).payment_id
    await execute(db, "UPDATE payments SET status = 'failed' WHERE id = :id", id=payment)
    assert await found(db) == {
        ("unsettled_payment_entries", f"payment:{payment}"),
        ("invoice_status", f"invoice:{invoice}"),
        ("invoice_receivable", f"invoice:{invoice}"),
    }


async def test_names_an_idempotency_key_without_its_payment(db: Database):
    viewer, [invoice] = await make_customer(db, "100.00", [("40.00", InvoiceStatus.ISSUED)])
    await pay(db, viewer, invoice, "10.00", "lost")
    await execute(db, "UPDATE idempotency_keys SET payment_id = NULL WHERE key = 'lost'")
    async with db.connect() as conn:
        key = await conn.scalar(text("SELECT id FROM idempotency_keys WHERE key = 'lost'"))
    assert await found(db) == {("idempotency_key_payment", f"idempotency_key:{key}")}


async def test_names_an_idempotency_key_naming_another_customers_payment(db: Database):
    alice, [hers] = await make_customer(db, "100.00", [("40.00", InvoiceStatus.ISSUED)])
    bob, [his] = await make_customer(db, "100.00", [("40.00", InvoiceStatus.ISSUED)])
    await pay(db, alice, hers, "10.00", "alice-key")
    bobs = (await pay(db, bob, his, "10.00", "bob-key")).payment_id
    await execute(
        db, "UPDATE idempotency_keys SET payment_id = :id WHERE key = 'alice-key'", id=bobs
    )
    async with db.connect() as conn:
        key = await conn.scalar(text("SELECT id FROM idempotency_keys WHERE key = 'alice-key'"))
    assert await found(db) == {("idempotency_key_payment", f"idempotency_key:{key}")}


async def test_names_a_refund_key_naming_another_customers_refund_or_two_answers(db: Database):
    """A refund's key is its payment's customer's: naming another customer's refund, or a
    payment and a refund at once, would answer a retry wrongly."""
    alice, [hers] = await make_customer(db, "100.00", [("40.00", InvoiceStatus.ISSUED)])
    bob, [his] = await make_customer(db, "100.00", [("40.00", InvoiceStatus.ISSUED)])
    admin = await make_admin(db)
    for viewer, invoice, key in ((alice, hers, "alice"), (bob, his, "bob")):
        paid = await pay(db, viewer, invoice, "10.00", f"{key}-pay")
        await refund_payment(
            db,
            admin,
            payment_id=paid.payment_id,
            amount=Decimal("1.00"),
            reason="r",
            idempotency_key=f"{key}-refund",
        )
    assert await found(db) == set()
    await execute(
        db,
        "UPDATE idempotency_keys SET refund_id ="
        " (SELECT refund_id FROM idempotency_keys WHERE key = 'bob-refund')"
        " WHERE key = 'alice-refund'",
    )
    await execute(
        db,
        "UPDATE idempotency_keys SET payment_id ="
        " (SELECT payment_id FROM idempotency_keys WHERE key = 'bob-pay')"
        " WHERE key = 'bob-refund'",
    )
    async with db.connect() as conn:
        ids = await conn.scalars(
            text("SELECT id FROM idempotency_keys WHERE key IN ('alice-refund', 'bob-refund')")
        )
        keys = set(ids)
    assert await found(db) == {("idempotency_key_payment", f"idempotency_key:{k}") for k in keys}


async def test_names_a_payment_of_another_customers_invoice(db: Database):
    alice, [hers] = await make_customer(db, "100.00", [("40.00", InvoiceStatus.ISSUED)])
    bob, _ = await make_customer(db, "100.00", [("40.00", InvoiceStatus.ISSUED)])
    payment = (await pay(db, alice, hers, "10.00", "crossed")).payment_id
    await execute(
        db, "UPDATE payments SET customer_id = :bob WHERE id = :id", bob=bob.customer_id, id=payment
    )
    assert ("payment_owner", f"payment:{payment}") in await found(db)


async def test_names_an_entry_booked_for_another_customer(db: Database):
    alice, [hers] = await make_customer(db, "100.00", [("40.00", InvoiceStatus.ISSUED)])
    bob, _ = await make_customer(db, "0", [])
    payment = (await pay(db, alice, hers, "10.00", "moved")).payment_id
    async with db.connect() as conn:
        entry = await conn.scalar(
            text("SELECT min(id) FROM transactions WHERE payment_id = :id"), {"id": payment}
        )
    await execute(
        db,
        "UPDATE transactions SET customer_id = :bob WHERE id = :id",
        bob=bob.customer_id,
        id=entry,
    )
    assert ("entry_owner", f"entry:{entry}") in await found(db)


async def test_names_a_balance_entry_in_another_currency(db: Database):
    alice, [hers] = await make_customer(db, "100.00", [("40.00", InvoiceStatus.ISSUED)])
    payment = (await pay(db, alice, hers, "10.00", "eur")).payment_id
    async with db.connect() as conn:
        entry = await conn.scalar(
            text(
                "SELECT id FROM transactions WHERE payment_id = :id"
                " AND account = 'customer_balance'"
            ),
            {"id": payment},
        )
    await execute(db, "UPDATE transactions SET currency = 'EUR' WHERE id = :id", id=entry)
    assert ("balance_currency", f"entry:{entry}") in await found(db)


async def test_names_a_refunded_status_its_refunds_do_not_bear_out(db: Database):
    alice, [hers] = await make_customer(db, "100.00", [("40.00", InvoiceStatus.ISSUED)])
    payment = (await pay(db, alice, hers, "10.00", "status")).payment_id
    await execute(db, "UPDATE payments SET status = 'refunded' WHERE id = :id", id=payment)
    assert ("refunded_status", f"payment:{payment}") in await found(db)


async def _line_of(db: Database, email: str) -> tuple[int, int, int]:
    """The newest line of a demo customer: its id, its invoice's and its subscription's."""
    async with db.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT l.id, l.invoice_id, l.subscription_id FROM invoice_lines l"
                    " JOIN invoices i ON i.id = l.invoice_id"
                    " JOIN customers c ON c.id = i.customer_id"
                    " JOIN users u ON u.id = c.user_id"
                    " WHERE u.email = :email ORDER BY l.period_start DESC, l.id LIMIT 1"
                ),
                {"email": email},
            )
        ).one()
    return row.id, row.invoice_id, row.subscription_id


async def test_names_an_invoice_its_lines_do_not_add_up_to(db: Database):
    assert await load_demo(db, customers=2)
    line, invoice, _ = await _line_of(db, "bob@example.com")
    await execute(db, "UPDATE invoice_lines SET amount = amount - 0.01 WHERE id = :id", id=line)
    assert await found(db) == {("invoice_lines_total", f"invoice:{invoice}")}


async def test_names_a_line_in_another_currency(db: Database):
    assert await load_demo(db, customers=2)
    line, _, _ = await _line_of(db, "bob@example.com")
    await execute(db, "UPDATE invoice_lines SET currency = 'USD' WHERE id = :id", id=line)
    assert await found(db) == {("invoice_line_currency", f"invoice_line:{line}")}


async def test_names_a_line_billing_another_customers_subscription(db: Database):
    assert await load_demo(db, customers=2)
    alices, _, _ = await _line_of(db, "alice@example.com")
    bobs, _, bobs_subscription = await _line_of(db, "bob@example.com")
    # Bob's invoice loses its line (so it is checked against none) and alice's line bills
    # his subscription for the same month instead of hers.
    await execute(db, "DELETE FROM invoice_lines WHERE id = :id", id=bobs)
    await execute(
        db,
        "UPDATE invoice_lines SET subscription_id = :subscription WHERE id = :id",
        subscription=bobs_subscription,
        id=alices,
    )
    assert await found(db) == {("invoice_line_owner", f"invoice_line:{alices}")}
