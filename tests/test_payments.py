"""Paying invoices from the balance and refunding: rules, idempotency, concurrency, ledger.

Each test makes its own customers in a database shared by the module, so `reconcile` over
the whole database must hold after every test.
"""

import asyncio
import secrets
from collections.abc import AsyncIterator, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
import pytest_asyncio
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domains.billing.card import Acquiring
from domains.billing.invoice import invoices_by_ids
from domains.billing.invoice_issue import ISSUED, IssuedInvoice, post_issuance
from domains.billing.ledger import Entry, post_movement
from domains.billing.models import (
    EntrySide,
    IdempotencyKey,
    Invoice,
    InvoiceStatus,
    LedgerAccount,
    Payment,
    PaymentMethod,
    PaymentStatus,
)
from domains.billing.pay_invoice import pay_invoice
from domains.billing.payment import payments_by_invoice_ids
from domains.billing.reconcile import reconcile
from domains.billing.refund_payment import refund_payment
from domains.billing.settlement import amount_due, amount_due_column, paid_per_invoice
from domains.clock import utcnow
from domains.customers.models import Customer
from domains.database import Database
from domains.errors import DomainError
from domains.identity.models import Role, User
from domains.identity.viewer import Viewer
from domains.models import metadata
from tests.conftest import migrated_database

TABLES = ("customers", "invoices", "payments", "transactions", "refunds", "idempotency_keys")
TABLES += ("outbox",)


@pytest_asyncio.fixture(scope="module")
async def payments_pg_url() -> AsyncIterator[str]:
    async with migrated_database("kabinet_pay") as url:
        yield url


@pytest_asyncio.fixture
async def pg_db(payments_pg_url: str) -> AsyncIterator[Database]:
    db = Database(payments_pg_url, pool_size=60)
    yield db
    await db.dispose()


@pytest_asyncio.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, payments_pg_url: str) -> AsyncIterator[Database]:
    """Both databases; the rules do not depend on which one runs them."""
    sqlite = request.param == "sqlite"
    database = Database(request.getfixturevalue("sqlite_url") if sqlite else payments_pg_url)
    yield database
    await database.dispose()


async def _insert_user(session: AsyncSession, email: str, role: Role, now: datetime) -> int:
    stmt = insert(User).values(
        email=email, role=role, is_active=True, password_hash="x", created_at=now
    )
    return (await session.execute(stmt.returning(User.id))).scalar_one()


async def book_top_up(
    session: AsyncSession, customer_id: int, amount: Decimal, now: datetime
) -> None:
    """A card top-up the acquirer confirmed, booked as its webhook books one."""
    payment_id = (
        await session.execute(
            insert(Payment)
            .values(
                customer_id=customer_id,
                amount=amount,
                currency="RUB",
                method=PaymentMethod.CARD,
                status=PaymentStatus.SUCCEEDED,
                refunded_amount=Decimal("0.00"),
                created_at=now,
            )
            .returning(Payment.id)
        )
    ).scalar_one()
    common = {"amount": amount, "currency": "RUB", "customer_id": customer_id}
    common["payment_id"] = payment_id
    await post_movement(
        session,
        [
            Entry(LedgerAccount.PROVIDER_CLEARING, EntrySide.DEBIT, **common),
            Entry(LedgerAccount.CUSTOMER_BALANCE, EntrySide.CREDIT, **common),
        ],
        now,
    )


async def insert_customer(session: AsyncSession, tag: str, now: datetime) -> tuple[int, int]:
    """A customer account (zero balance, RUB) and its user: (user id, customer id)."""
    unique = f"{tag}-{secrets.token_hex(6)}"
    user_id = await _insert_user(session, f"{unique}@{tag}.test", Role.CUSTOMER, now)
    stmt = insert(Customer).values(
        user_id=user_id,
        contract_num=unique.upper(),
        full_name=f"{tag.title()} Test",
        balance=Decimal(0),
        currency="RUB",
        created_at=now,
    )
    return user_id, (await session.execute(stmt.returning(Customer.id))).scalar_one()


async def make_admin(db: Database) -> Viewer:
    async with db.transaction() as session:
        email = f"{secrets.token_hex(4)}@admin.test"
        return Viewer(await _insert_user(session, email, Role.ADMIN, utcnow()), Role.ADMIN)


async def make_customer(
    db: Database, balance: str, invoices: list[tuple[str, InvoiceStatus]]
) -> tuple[Viewer, list[int]]:
    """A customer whose balance came from a top-up, with invoices of the given amounts.

    Issued, overdue and paid invoices are posted as issued (receivable against revenue).
    """
    now = utcnow()
    async with db.transaction() as session:
        user_id, customer_id = await insert_customer(session, "pay", now)
        if Decimal(balance):
            await book_top_up(session, customer_id, Decimal(balance), now)
        invoice_ids = []
        for n, (amount, status) in enumerate(invoices):
            invoice_ids.append(
                (
                    await session.execute(
                        insert(Invoice)
                        .values(
                            customer_id=customer_id,
                            number=f"P-{customer_id}-{n}",
                            period_start=date(2026, 1, 1),
                            period_end=date(2026, 1, 31),
                            amount=Decimal(amount),
                            currency="RUB",
                            status=status,
                            issued_at=now,
                            due_date=now.date() + timedelta(days=10),
                            created_at=now,
                        )
                        .returning(Invoice.id)
                    )
                ).scalar_one()
            )
        await post_issuance(
            session,
            [
                IssuedInvoice(invoice_id, customer_id, Decimal(amount), "RUB", now)
                for invoice_id, (amount, status) in zip(invoice_ids, invoices, strict=True)
                if status in ISSUED
            ],
        )
    return Viewer(user_id, Role.CUSTOMER, customer_id), invoice_ids


async def snapshot(db: Database, tables: Sequence[str] = TABLES) -> dict[str, list[tuple]]:
    """The tables' rows; an outbox row's `published_at` is the relay's, not the change's."""
    async with db.connect() as conn:
        result = {}
        for name in tables:
            table = metadata.tables[name]
            columns = [c for c in table.c if (name, c.name) != ("outbox", "published_at")]
            rows = await conn.execute(select(*columns).order_by(*table.primary_key))
            result[name] = [tuple(row) for row in rows]
        return result


async def balance_of(db: Database, customer_id: int) -> Decimal:
    async with db.connect() as conn:
        stmt = select(Customer.balance).where(Customer.id == customer_id)
        return (await conn.execute(stmt)).scalar_one()


async def invoice_status(db: Database, invoice_id: int) -> InvoiceStatus:
    async with db.connect() as conn:
        stmt = select(Invoice.status).where(Invoice.id == invoice_id)
        return (await conn.execute(stmt)).scalar_one()


async def events_of(db: Database, customer_id: int) -> list[str]:
    outbox = metadata.tables["outbox"]
    async with db.connect() as conn:
        stmt = (
            select(outbox.c.type)
            .where(outbox.c.subject == f"customer:{customer_id}")
            .order_by(outbox.c.occurred_at, outbox.c.type)
        )
        return list((await conn.execute(stmt)).scalars())


def pay(
    db: Database,
    viewer: Viewer,
    invoice_id: int,
    amount: str | None,
    key: str,
    method: PaymentMethod = PaymentMethod.BALANCE,
    acquiring: Acquiring | None = None,
):
    return pay_invoice(
        db,
        viewer,
        invoice_id=invoice_id,
        method=method,
        amount=None if amount is None else Decimal(amount),
        idempotency_key=key,
        acquiring=acquiring,
    )


async def test_partial_then_full_payment(db: Database):
    viewer, [invoice] = await make_customer(db, "500.00", [("300.00", InvoiceStatus.ISSUED)])
    first = await pay(db, viewer, invoice, "100.00", "k1")
    assert await invoice_status(db, invoice) is InvoiceStatus.ISSUED
    assert await balance_of(db, viewer.customer_id) == Decimal("400.00")
    second = await pay(db, viewer, invoice, None, "k2")  # omitted: the rest
    assert first.payment_id != second.payment_id
    assert not second.replayed
    assert await invoice_status(db, invoice) is InvoiceStatus.PAID
    assert await balance_of(db, viewer.customer_id) == Decimal("200.00")
    async with db.connect() as conn:
        amounts = (
            await conn.execute(select(Payment.amount).where(Payment.invoice_id == invoice))
        ).scalars()
        assert sorted(amounts) == [Decimal("100.00"), Decimal("200.00")]
    events = await events_of(db, viewer.customer_id)
    assert sorted(events) == sorted(["payment.created", "balance.changed"] * 2 + ["invoice.paid"])
    assert await reconcile(db) == []


CASES = {
    "not the viewer's invoice": ("other", None, "NOT_FOUND"),
    "no such invoice": ("missing", None, "NOT_FOUND"),
    "draft": ("draft", None, "INVOICE_NOT_PAYABLE"),
    "paid": ("paid", None, "INVOICE_NOT_PAYABLE"),
    "void": ("void", None, "INVOICE_NOT_PAYABLE"),
    "zero": ("issued", "0", "INVALID_AMOUNT"),
    "negative": ("issued", "-5.00", "INVALID_AMOUNT"),
    "fraction of a cent": ("issued", "1.001", "INVALID_AMOUNT"),
    "more than due": ("issued", "300.01", "INVALID_AMOUNT"),
    "balance too low": ("big", None, "INSUFFICIENT_FUNDS"),
    "card": ("issued", None, "PAYMENT_METHOD_UNAVAILABLE"),
    "staff": ("issued", None, "FORBIDDEN"),
    "empty key": ("issued", None, "BAD_USER_INPUT"),
}


@pytest.mark.parametrize("case", CASES)
async def test_refusals_have_codes_and_leave_no_trace(db: Database, case: str):
    target, amount, code = CASES[case]
    statuses = {
        "issued": ("300.00", InvoiceStatus.ISSUED),
        "draft": ("10.00", InvoiceStatus.DRAFT),
        "paid": ("10.00", InvoiceStatus.ISSUED),  # paid below
        "void": ("10.00", InvoiceStatus.VOID),
        "big": ("900.00", InvoiceStatus.OVERDUE),
    }
    viewer, ids = await make_customer(db, "500.00", list(statuses.values()))
    by_name = dict(zip(statuses, ids, strict=True))
    await pay(db, viewer, by_name["paid"], None, "setup")
    _, [others] = await make_customer(db, "0", [("10.00", InvoiceStatus.ISSUED)])
    invoice = {"other": others, "missing": 10**9}.get(target) or by_name[target]
    who = Viewer(viewer.user_id, Role.ADMIN) if case == "staff" else viewer
    method = PaymentMethod.CARD if case == "card" else PaymentMethod.BALANCE
    key = "" if case == "empty key" else "the-key"
    before = await snapshot(db)
    with pytest.raises(DomainError) as refused:
        await pay(db, who, invoice, amount, key, method=method)
    assert refused.value.code == code
    assert await snapshot(db) == before
    # A refused request does not consume its key.
    result = await pay(db, viewer, by_name["issued"], "1.00", "the-key")
    assert not result.replayed


async def test_same_key_replays_and_other_parameters_conflict(db: Database):
    viewer, [invoice, other] = await make_customer(
        db, "500.00", [("300.00", InvoiceStatus.ISSUED), ("50.00", InvoiceStatus.ISSUED)]
    )
    first = await pay(db, viewer, invoice, "100.00", "retry-me")
    again = await pay(db, viewer, invoice, "100.00", "retry-me")
    assert again.payment_id == first.payment_id
    assert again.replayed
    assert await balance_of(db, viewer.customer_id) == Decimal("400.00")
    before = await snapshot(db)
    for invoice_id, amount in ((invoice, "100.01"), (other, "100.00"), (invoice, None)):
        with pytest.raises(DomainError) as refused:
            await pay(db, viewer, invoice_id, amount, "retry-me")
        assert refused.value.code == "IDEMPOTENCY_KEY_REUSED"
    assert await snapshot(db) == before
    # Keys are the customer's own: another customer's equal key is another request.
    stranger, [theirs] = await make_customer(db, "20.00", [("20.00", InvoiceStatus.ISSUED)])
    assert (await pay(db, stranger, theirs, None, "retry-me")).payment_id != first.payment_id
    # After its 24 hours a key may serve a new payment.
    async with db.transaction() as session:
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.customer_id == viewer.customer_id)
            .values(created_at=utcnow() - timedelta(days=2), expires_at=utcnow())
        )
    renewed = await pay(db, viewer, other, None, "retry-me")
    assert renewed.payment_id != first.payment_id
    assert not renewed.replayed
    assert await reconcile(db) == []


async def test_refunds(db: Database):
    viewer, [invoice] = await make_customer(db, "300.00", [("300.00", InvoiceStatus.ISSUED)])
    paid = await pay(db, viewer, invoice, None, "pay")
    admin = await make_admin(db)
    before = await snapshot(db)
    for who, amount, code in (
        (viewer, "10.00", "FORBIDDEN"),
        (Viewer(admin.user_id, Role.OPERATOR), "10.00", "FORBIDDEN"),
        (admin, "0", "INVALID_AMOUNT"),
        (admin, "300.01", "REFUND_EXCEEDS_PAYMENT"),
    ):
        with pytest.raises(DomainError) as refused:
            await refund_payment(
                db,
                who,
                payment_id=paid.payment_id,
                amount=Decimal(amount),
                reason="r",
                idempotency_key=f"refused-{code}",
            )
        assert refused.value.code == code
    with pytest.raises(DomainError) as refused:
        await refund_payment(
            db, admin, payment_id=10**9, amount=Decimal(1), reason="r", idempotency_key="none"
        )
    assert refused.value.code == "NOT_FOUND"
    assert await snapshot(db) == before

    await refund_payment(
        db,
        admin,
        payment_id=paid.payment_id,
        amount=Decimal("100.00"),
        reason="outage",
        idempotency_key="refund-1",
    )
    assert await invoice_status(db, invoice) is InvoiceStatus.ISSUED
    assert await balance_of(db, viewer.customer_id) == Decimal("100.00")
    await refund_payment(
        db,
        admin,
        payment_id=paid.payment_id,
        amount=Decimal("200.00"),
        reason="outage",
        idempotency_key="refund-2",
    )
    async with db.connect() as conn:
        payment = (await conn.execute(select(Payment).where(Payment.id == paid.payment_id))).one()
    assert payment.status is PaymentStatus.REFUNDED
    assert payment.refunded_amount == Decimal("300.00")
    assert await balance_of(db, viewer.customer_id) == Decimal("300.00")
    with pytest.raises(DomainError) as refused:
        await refund_payment(
            db,
            admin,
            payment_id=paid.payment_id,
            amount=Decimal(1),
            reason="r",
            idempotency_key="refund-3",
        )
    assert refused.value.code == "REFUND_EXCEEDS_PAYMENT"
    assert (await events_of(db, viewer.customer_id)).count("payment.refunded") == 2
    # The refunded money pays the invoice again.
    await pay(db, viewer, invoice, None, "pay-again")
    assert await invoice_status(db, invoice) is InvoiceStatus.PAID
    assert await reconcile(db) == []


async def test_amount_due_is_one_rule_over_loaded_payments_and_in_sql(db: Database):
    """What `amountDue` shows (the rule over the invoice's payments, as the loader reads
    them) is what `reconcile` computes in SQL: after partial payments, refunds, a card
    payment still pending, and on draft and void invoices."""
    viewer, invoices = await make_customer(
        db,
        "500.00",
        [
            ("300.00", InvoiceStatus.ISSUED),
            ("40.00", InvoiceStatus.OVERDUE),
            ("10.00", InvoiceStatus.DRAFT),
            ("10.00", InvoiceStatus.VOID),
        ],
    )
    partial = await pay(db, viewer, invoices[0], "100.00", "due-1")
    full = await pay(db, viewer, invoices[1], None, "due-2")
    admin = await make_admin(db)
    async with db.transaction() as session:
        # A card payment the provider has not confirmed counts for nothing yet.
        await session.execute(
            insert(Payment).values(
                invoice_id=invoices[0],
                customer_id=viewer.customer_id,
                amount=Decimal("50.00"),
                currency="RUB",
                method=PaymentMethod.CARD,
                status=PaymentStatus.PENDING,
                refunded_amount=Decimal("0.00"),
                created_at=utcnow(),
            )
        )
    for payment, amount in ((partial, "30.00"), (full, "15.50")):
        await refund_payment(
            db,
            admin,
            payment_id=payment.payment_id,
            amount=Decimal(amount),
            reason="r",
            idempotency_key=f"refund-{payment.payment_id}",
        )

    paid = paid_per_invoice()
    async with db.read() as reader:
        rows = await invoices_by_ids(reader, invoices)
        loaded = await payments_by_invoice_ids(reader, invoices)
    async with db.connect() as conn:
        in_sql = dict(
            (
                await conn.execute(
                    select(Invoice.id, amount_due_column(paid))
                    .select_from(Invoice.__table__.outerjoin(paid, paid.c.invoice_id == Invoice.id))
                    .where(Invoice.id.in_(invoices))
                )
            ).all()
        )
    due = [amount_due(rows[i], loaded[i]) for i in invoices]
    assert due == [Decimal("230.00"), Decimal("15.50"), Decimal("0.00"), Decimal("0.00")]
    assert [Decimal(in_sql[i]).quantize(Decimal("0.01")) for i in invoices] == due
    assert await reconcile(db) == []


@pytest.mark.postgres
async def test_concurrent_payments_never_overpay_or_overdraw(pg_db: Database):
    viewer, [invoice] = await make_customer(pg_db, "1000.00", [("100.00", InvoiceStatus.ISSUED)])
    results = await asyncio.gather(
        *(pay(pg_db, viewer, invoice, "10.00", f"k{n}") for n in range(50)),
        return_exceptions=True,
    )
    paid = [r for r in results if not isinstance(r, BaseException)]
    refused = {r.code for r in results if isinstance(r, DomainError)}
    assert len(paid) == 10
    assert len(paid) + sum(isinstance(r, DomainError) for r in results) == 50
    assert refused <= {"INVALID_AMOUNT", "INVOICE_NOT_PAYABLE"}
    assert await invoice_status(pg_db, invoice) is InvoiceStatus.PAID
    assert await balance_of(pg_db, viewer.customer_id) == Decimal("900.00")

    poor, invoices = await make_customer(
        pg_db, "25.00", [("10.00", InvoiceStatus.ISSUED) for _ in range(50)]
    )
    results = await asyncio.gather(
        *(pay(pg_db, poor, invoice_id, "1.00", f"k{invoice_id}") for invoice_id in invoices),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 25
    assert {r.code for r in results if isinstance(r, DomainError)} == {"INSUFFICIENT_FUNDS"}
    assert await balance_of(pg_db, poor.customer_id) == Decimal("0.00")
    assert await reconcile(pg_db) == []


@pytest.mark.postgres
async def test_concurrent_requests_with_one_key_make_one_payment(pg_db: Database):
    viewer, [invoice] = await make_customer(pg_db, "1000.00", [("100.00", InvoiceStatus.ISSUED)])
    results = await asyncio.gather(
        *(pay(pg_db, viewer, invoice, "10.00", "one-key") for _ in range(50))
    )
    assert len({r.payment_id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    async with pg_db.connect() as conn:
        count = len(
            (await conn.execute(select(Payment.id).where(Payment.invoice_id == invoice))).all()
        )
    assert count == 1
    assert await balance_of(pg_db, viewer.customer_id) == Decimal("990.00")
    assert await reconcile(pg_db) == []


async def test_a_retried_refund_refunds_once(db: Database):
    """Concurrent retries of one refund (50 at once, on both databases) make one refund, one
    balance credit and one event, and all answer with it; the key asked for another amount,
    or already spent on a payment, is refused."""
    viewer, [invoice] = await make_customer(db, "300.00", [("300.00", InvoiceStatus.ISSUED)])
    paid = await pay(db, viewer, invoice, None, "pay")
    admin = await make_admin(db)

    def refund(amount: str, key: str = "refund-once"):
        return refund_payment(
            db,
            admin,
            payment_id=paid.payment_id,
            amount=Decimal(amount),
            reason="outage",
            idempotency_key=key,
        )

    results = await asyncio.gather(*(refund("40.00") for _ in range(50)))
    assert len({r.refund_id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert await balance_of(db, viewer.customer_id) == Decimal("40.00")
    assert (await events_of(db, viewer.customer_id)).count("payment.refunded") == 1
    before = await snapshot(db)
    for amount, key in (("41.00", "refund-once"), ("40.00", "pay")):
        with pytest.raises(DomainError) as refused:
            await refund(amount, key)
        assert refused.value.code == "IDEMPOTENCY_KEY_REUSED"
    assert await snapshot(db) == before
    assert await reconcile(db) == []


async def test_reconcile_names_broken_rows(sqlite_url: str):
    db = Database(sqlite_url)
    try:
        viewer, [invoice] = await make_customer(db, "50.00", [("30.00", InvoiceStatus.ISSUED)])
        await pay(db, viewer, invoice, None, "k")
        assert await reconcile(db) == []
        async with db.transaction() as session:
            await session.execute(
                update(Customer).where(Customer.id == viewer.customer_id).values(balance=Decimal(7))
            )
            await session.execute(
                update(Invoice).where(Invoice.id == invoice).values(status=InvoiceStatus.ISSUED)
            )
        found = {(p.check, p.row) for p in await reconcile(db)}
        assert found == {
            ("balance_mismatch", f"customer:{viewer.customer_id}"),
            ("invoice_status", f"invoice:{invoice}"),
        }
    finally:
        await db.dispose()
