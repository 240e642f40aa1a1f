"""Random payments, partial payments, retries and refunds never break a ledger invariant.

A hypothesis state machine drives the domain actions on SQLite (one file, a new customer
per example) and checks `reconcile` and its own model of the balance after every step.
"""

import asyncio
import secrets
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import insert, select

from domains.billing.models import InvoiceStatus, Payment, PaymentMethod
from domains.billing.pay_invoice import pay_invoice
from domains.billing.reconcile import reconcile
from domains.billing.refund_payment import refund_payment
from domains.clock import utcnow
from domains.customers.models import Customer
from domains.database import Database
from domains.errors import DomainError
from domains.identity.models import Role, User
from domains.identity.viewer import Viewer
from migrations import upgrade
from tests.test_payments import make_customer

INVOICES = ("120.00", "75.50", "300.00")
# What a random payment may meet: anything else fails the test.
PAY_REFUSALS = {"INVALID_AMOUNT", "INSUFFICIENT_FUNDS", "INVOICE_NOT_PAYABLE"}
amounts = st.one_of(
    st.none(), st.decimals(min_value=Decimal("0.01"), max_value=Decimal("200.00"), places=2)
)


def test_random_payments_and_refunds_keep_the_ledger_balanced(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)

    class Ledger(RuleBasedStateMachine):
        # (invoice id, key, amount asked, payment id) of each payment made.
        payments = Bundle("payments")

        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.db = Database(url)
            self.viewer, self.invoices = self.run(
                make_customer(self.db, "400.00", [(a, InvoiceStatus.ISSUED) for a in INVOICES])
            )
            self.admin = Viewer(self.run(self._admin()), Role.ADMIN)
            self.balance = Decimal("400.00")

        def run(self, coroutine):
            return self.loop.run_until_complete(coroutine)

        async def _admin(self) -> int:
            async with self.db.transaction() as session:
                stmt = insert(User).values(
                    email=f"{secrets.token_hex(6)}@admin.test",
                    role=Role.ADMIN,
                    is_active=True,
                    password_hash="x",
                    created_at=utcnow(),
                )
                return (await session.execute(stmt.returning(User.id))).scalar_one()

        @rule(target=payments, invoice=st.integers(0, len(INVOICES) - 1), amount=amounts)
        def pay(self, invoice: int, amount: Decimal | None) -> object:
            key = secrets.token_hex(8)
            try:
                result = self.run(
                    pay_invoice(
                        self.db,
                        self.viewer,
                        invoice_id=self.invoices[invoice],
                        method=PaymentMethod.BALANCE,
                        amount=amount,
                        idempotency_key=key,
                    )
                )
            except DomainError as error:
                if error.code not in PAY_REFUSALS:
                    raise
                return multiple()
            self.balance -= self.run(self._payment_amount(result.payment_id))
            return (self.invoices[invoice], key, amount, result.payment_id)

        async def _payment_amount(self, payment_id: int) -> Decimal:
            async with self.db.read() as conn:
                stmt = select(Payment.amount).where(Payment.id == payment_id)
                return (await conn.execute(stmt)).scalar_one()

        @rule(payment=payments)
        def retry(self, payment: tuple[int, str, Decimal | None, int]) -> None:
            invoice_id, key, amount, payment_id = payment
            result = self.run(
                pay_invoice(
                    self.db,
                    self.viewer,
                    invoice_id=invoice_id,
                    method=PaymentMethod.BALANCE,
                    amount=amount,
                    idempotency_key=key,
                )
            )
            assert result.replayed
            assert result.payment_id == payment_id

        @rule(payment=payments, amount=st.decimals(Decimal("0.01"), Decimal("150.00"), places=2))
        def refund(self, payment: tuple[int, str, Decimal | None, int], amount: Decimal) -> None:
            *_, payment_id = payment
            try:
                self.run(
                    refund_payment(
                        self.db, self.admin, payment_id=payment_id, amount=amount, reason="test"
                    )
                )
            except DomainError as error:
                if error.code != "REFUND_EXCEEDS_PAYMENT":
                    raise
                return
            self.balance += amount

        @invariant()
        def ledger_holds(self) -> None:
            assert self.run(reconcile(self.db)) == []
            assert self.run(self._balance()) == self.balance
            assert self.balance >= 0

        async def _balance(self) -> Decimal:
            async with self.db.read() as conn:
                stmt = select(Customer.balance).where(Customer.id == self.viewer.customer_id)
                return (await conn.execute(stmt)).scalar_one()

        def teardown(self) -> None:
            self.run(self.db.dispose())
            self.loop.close()

    run_state_machine_as_test(
        Ledger,
        settings=settings(
            max_examples=10,
            stateful_step_count=10,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
