"""The invoice run with autopay while its customers pay, top up and are refunded (issue 13,
point 7), on PostgreSQL: no deadlock, each invoice once, no balance overdrawn, and the
ledger reconciles.

The run is a process of its own in production (`kabinet billing run`); here it has a
Database (and pool) of its own beside the one the money actions share.
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from decimal import Decimal

import pytest
import pytest_asyncio
from sqlalchemy import func, insert, select

from domains.billing.autopay import AutopayMode
from domains.billing.errors import InsufficientFunds
from domains.billing.invoice_issue import IssuedInvoice, post_issuance
from domains.billing.models import Invoice, InvoiceStatus, Payment, PaymentMethod
from domains.billing.pay_invoice import pay_invoice
from domains.billing.refund_payment import refund_payment
from domains.billing.settlement import lock_customer
from domains.customers.models import Customer
from domains.database import Database
from domains.identity.models import Role
from domains.identity.viewer import Viewer
from tests.conftest import migrated_database
from tests.test_invoice_run import (
    ACTIVE,
    FIRED,
    LONG_AGO,
    assert_reconciled,
    issued_events,
    make_customer,
    make_tariff,
    monthly_invoices,
    run,
    wait_for_backend,
)
from tests.test_payments import book_top_up, make_admin

pytestmark = pytest.mark.postgres

CUSTOMERS = 12
# Each customer: a 100.00 subscription to bill, 150.00 on the balance, an old invoice of
# 100.00 to pay meanwhile, and an old payment of 40.00 to refund 20.00 of meanwhile.
MONTHLY, BALANCE, OWED, PAID_BEFORE = "100.00", "150.00", "100.00", "40.00"
TOP_UP, REFUND = Decimal("30.00"), Decimal("20.00")


@pytest_asyncio.fixture
async def url() -> AsyncIterator[str]:
    async with migrated_database("kabinet_run_concurrency") as url:
        yield url


async def old_invoice(db: Database, customer_id: int, number: str, amount: str) -> int:
    """An issued invoice of December, from before the run."""
    async with db.transaction() as session:
        invoice_id = (
            await session.execute(
                insert(Invoice)
                .values(
                    customer_id=customer_id,
                    number=number,
                    period_start=date(2025, 12, 1),
                    period_end=date(2025, 12, 31),
                    amount=Decimal(amount),
                    currency="RUB",
                    status=InvoiceStatus.ISSUED,
                    issued_at=FIRED,
                    due_date=date(2026, 2, 20),
                    created_at=FIRED,
                )
                .returning(Invoice.id)
            )
        ).scalar_one()
        await post_issuance(
            session, [IssuedInvoice(invoice_id, customer_id, Decimal(amount), "RUB", FIRED)]
        )
    return invoice_id


async def locked_top_up(db: Database, customer_id: int, amount: Decimal) -> None:
    """A confirmed top-up, booked as the webhook books one: under the customer's lock."""
    async with db.transaction() as session:
        await lock_customer(session, customer_id)
        await book_top_up(session, customer_id, amount, FIRED)


@pytest.mark.parametrize("mode", [AutopayMode.FULL, AutopayMode.PARTIAL])
async def test_payments_top_ups_and_refunds_during_the_run_leave_a_consistent_ledger(
    url: str, mode: AutopayMode
) -> None:
    db, runner = Database(url, pool_size=20), Database(url)
    try:
        tariff = await make_tariff(db, MONTHLY)
        admin = await make_admin(db)
        people = []
        for n in range(CUSTOMERS):
            customer = await make_customer(db, [(tariff, LONG_AGO, None, ACTIVE)])
            async with db.connect() as conn:
                user_id = (
                    await conn.execute(select(Customer.user_id).where(Customer.id == customer))
                ).scalar_one()
            viewer = Viewer(user_id, Role.CUSTOMER, customer)
            paid = await old_invoice(db, customer, f"OLD-A-{n}", PAID_BEFORE)
            owed = await old_invoice(db, customer, f"OLD-B-{n}", OWED)
            await locked_top_up(db, customer, Decimal(BALANCE) + Decimal(PAID_BEFORE))
            payment = await pay_invoice(
                db,
                viewer,
                invoice_id=paid,
                method=PaymentMethod.BALANCE,
                amount=None,
                idempotency_key=f"before-{n}",
            )
            people.append((customer, viewer, owed, payment.payment_id))

        held = 7  # the second customer of the third batch

        def actions(n: int) -> list[Callable[[], Awaitable[object]]]:
            customer, viewer, owed, payment_id = people[n]
            # The held customer's top-up is the one holding its row.
            top_ups = [] if n == held else [lambda: locked_top_up(db, customer, TOP_UP)]
            return [
                *top_ups,
                lambda: pay_invoice(
                    db,
                    viewer,
                    invoice_id=owed,
                    method=PaymentMethod.BALANCE,
                    amount=None,
                    idempotency_key=f"during-{n}",
                ),
                lambda: refund_payment(
                    db,
                    admin,
                    payment_id=payment_id,
                    amount=REFUND,
                    reason="goodwill",
                    idempotency_key=f"refund-{n}",
                ),
            ]

        async def act(action: Callable[[], Awaitable[object]]) -> str:
            try:
                await action()
            except InsufficientFunds:
                # The run's autopay took the balance first: refused, nothing written.
                return "refused"
            return "done"

        async with asyncio.timeout(120):  # a guard against a hang, never a measure
            # A top-up of a customer of the run's third batch holds their row: the run
            # waits for it inside that batch, the first two committed, the batch's first
            # customer's row share-locked by its new invoice.
            async with db.transaction() as session:
                await lock_customer(session, people[held][0])
                await book_top_up(session, people[held][0], TOP_UP, FIRED)
                billing = asyncio.create_task(run(runner, mode, batch_size=3))
                await wait_for_backend(db, "transactionid", "INSERT INTO invoices%")
                # Everyone pays, tops up and is refunded while the run is under way.
                during = [
                    asyncio.create_task(act(action))
                    for n in range(CUSTOMERS)
                    for action in actions(n)
                ]
                # Money actions of that batch's customers wait: for the run (the first's)
                # and for this top-up (the held one's).
                await wait_for_backend(db, "transactionid", "SELECT%FOR UPDATE%")
            done = await billing
            outcomes = await asyncio.gather(*during)

        assert done.invoices == CUSTOMERS
        billed = dict(await monthly_invoices(db))
        assert sorted(billed) == sorted(customer for customer, *_ in people)
        assert len(await issued_events(db)) == CUSTOMERS
        assert set(outcomes) <= {"done", "refused"}
        async with db.connect() as conn:
            balances = dict((await conn.execute(select(Customer.id, Customer.balance))).all())
            autopaid = (
                await conn.execute(
                    select(Payment.invoice_id, Payment.amount).where(
                        Payment.invoice_id.in_(billed.values())
                    )
                )
            ).all()
            payments = (await conn.execute(select(func.count()).select_from(Payment))).scalar()
        # Every balance is what its ledger says (reconcile), none overdrawn, and each new
        # invoice paid at most once, by at most its amount.
        assert all(balance >= 0 for balance in balances.values())
        assert len({invoice_id for invoice_id, _ in autopaid}) == len(autopaid) == done.autopaid
        assert all(Decimal("0") < amount <= Decimal(MONTHLY) for _, amount in autopaid)
        assert payments > 2 * CUSTOMERS
        await assert_reconciled(db)
    finally:
        await db.dispose()
        await runner.dispose()
