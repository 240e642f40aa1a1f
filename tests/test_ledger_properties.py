"""Random payments, partial payments, retries, refunds and card top-ups never break a
ledger invariant.

A hypothesis state machine drives the domain actions (a new customer per example) and
checks `reconcile`, its own model of the balance and the running balance of the balance
history after every step, on SQLite (a file) and on PostgreSQL (a database of its own).
Card top-ups go to the sandbox acquirer, a real HTTP server; their results come back as
signed webhooks through the webhook's domain path (signature check, parse, settle),
delivered and redelivered in any order. The quick run is on both; the deeper one (`slow`:
more and longer sequences) on PostgreSQL, production's database, within the suite's time.
"""

import asyncio
import itertools
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
import pytest_asyncio
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

from adapters.acquirer_client import SandboxProvider
from adapters.sandbox_acquirer import create_sandbox_app
from domains.billing.card import Acquiring, top_up_balance
from domains.billing.models import EntrySide, InvoiceStatus, Payment, PaymentMethod
from domains.billing.pay_invoice import pay_invoice
from domains.billing.reconcile import reconcile
from domains.billing.refund_payment import refund_payment
from domains.billing.transaction import BalanceEntryRow, balance_history_page
from domains.billing.webhook import SUCCEEDED, parse_notice, settle, signature, signature_valid
from domains.clock import utcnow
from domains.customers.models import Customer
from domains.database import Database
from domains.errors import DomainError
from domains.identity.models import Role, User
from domains.identity.viewer import Viewer
from domains.keyset import MAX_PAGE_SIZE, Window
from migrations import upgrade
from tests.conftest import migrated_database
from tests.servers import free_socket, serve
from tests.test_payments import make_customer

INVOICES = ("120.00", "75.50", "300.00")
# What a random payment may meet: anything else fails the test.
PAY_REFUSALS = {"INVALID_AMOUNT", "INSUFFICIENT_FUNDS", "INVOICE_NOT_PAYABLE"}
amounts = st.one_of(
    st.none(), st.decimals(min_value=Decimal("0.01"), max_value=Decimal("200.00"), places=2)
)
top_up_amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("500.00"), places=2)
SECRET = b"whsec-properties"
# The deeper run: three times the quick run's steps, and sequences twice as long.
EXAMPLES, STEPS = 15, 20


@pytest.fixture(scope="module")
def sqlite_ledger_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('ledger') / 'ledger.db'}"
    upgrade(url)
    return url


@pytest_asyncio.fixture(scope="module")
async def postgres_ledger_url() -> AsyncIterator[str]:
    async with migrated_database("kabinet_ledger") as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_ledger_url")


@pytest.fixture
def sandbox_url() -> Iterator[str]:
    """An acquirer per test: it knows a payment by its idempotence key, our payment id,
    which the other backend's database numbers alike."""
    # The sandbox's own webhook sending is not used (?deliver=0): the machine delivers.
    sandbox = create_sandbox_app("http://127.0.0.1:9/unused", SECRET)
    with serve(sandbox, free_socket()) as url:
        yield url


def explore(url: str, sandbox_url: str, *, examples: int, steps: int) -> None:
    run_state_machine_as_test(
        ledger_machine(url, sandbox_url),
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def test_random_payments_and_refunds_keep_the_ledger_balanced(
    ledger_url: str, sandbox_url: str
) -> None:
    explore(ledger_url, sandbox_url, examples=10, steps=10)


@pytest.mark.slow
@pytest.mark.postgres
def test_longer_random_sequences_keep_the_ledger_balanced(
    postgres_ledger_url: str, sandbox_url: str
) -> None:
    explore(postgres_ledger_url, sandbox_url, examples=EXAMPLES, steps=STEPS)


def ledger_machine(url: str, sandbox_url: str) -> type[RuleBasedStateMachine]:
    class Ledger(RuleBasedStateMachine):
        # (invoice id, key, amount asked, payment id) of each payment made.
        payments = Bundle("payments")
        # (payment id, provider payment id) of each card top-up started.
        top_ups = Bundle("top_ups")
        # The raw body of each webhook event the sandbox produced.
        events = Bundle("events")

        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.db = Database(url)
            self.viewer, self.invoices = self.run(
                make_customer(self.db, "400.00", [(a, InvoiceStatus.ISSUED) for a in INVOICES])
            )
            self.admin = Viewer(self.run(self._admin()), Role.ADMIN)
            self.balance = Decimal("400.00")
            self.acquiring = Acquiring(SandboxProvider(sandbox_url), "https://kabinet.example/")
            # Top-ups not settled yet: what each will add when it succeeds.
            self.pending: dict[int, Decimal] = {}

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
            async with self.db.connect() as conn:
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
                        self.db,
                        self.admin,
                        payment_id=payment_id,
                        amount=amount,
                        reason="test",
                        idempotency_key=secrets.token_hex(8),
                    )
                )
            except DomainError as error:
                if error.code != "REFUND_EXCEEDS_PAYMENT":
                    raise
                return
            self.balance += amount

        @rule(target=top_ups, amount=top_up_amounts)
        def top_up(self, amount: Decimal) -> tuple[int, str]:
            started = self.run(
                top_up_balance(
                    self.db,
                    self.acquiring,
                    self.viewer,
                    amount=amount,
                    idempotency_key=secrets.token_hex(8),
                )
            )
            self.pending[started.payment_id] = amount
            return started.payment_id, self.run(self._provider_id(started.payment_id))

        async def _provider_id(self, payment_id: int) -> str:
            async with self.db.connect() as conn:
                stmt = select(Payment.provider_payment_id).where(Payment.id == payment_id)
                return (await conn.execute(stmt)).scalar_one()

        @rule(target=events, top_up=top_ups, succeed=st.booleans())
        def provider_reports(self, top_up: tuple[int, str], succeed: bool) -> bytes:
            """The payer confirms (or the bank declines); the webhook is delivered."""
            payment_id, provider_id = top_up
            outcome = "succeed" if succeed else "fail"
            answer = self.run(self._sandbox(f"/sandbox/payments/{provider_id}/{outcome}"))
            body = json.dumps(answer["event"]).encode()
            assert self._deliver(body)
            amount = self.pending.pop(payment_id, None)
            if amount is not None and answer["event"]["type"] == SUCCEEDED:
                self.balance += amount
            return body

        async def _sandbox(self, path: str) -> dict:
            async with httpx.AsyncClient(base_url=sandbox_url) as http:
                response = await http.post(path, params={"deliver": "0"})
            assert response.status_code == 200, response.text
            return response.json()

        def _deliver(self, body: bytes) -> bool:
            """What `POST /webhooks/payments/sandbox` does with a correctly signed event."""
            timestamp = str(int(time.time()))
            signed = signature(SECRET, timestamp, body)
            assert signature_valid(
                SECRET, timestamp, signed, body, now=utcnow(), tolerance=timedelta(minutes=5)
            )
            return self.run(settle(self.db, "sandbox", parse_notice(json.loads(body))))

        @rule(event=events)
        def redeliver(self, event: bytes) -> None:
            assert not self._deliver(event)

        @invariant()
        def ledger_holds(self) -> None:
            assert self.run(reconcile(self.db)) == []
            assert self.run(self._balance()) == self.balance
            assert self.balance >= 0

        @invariant()
        def history_runs_to_the_balance(self) -> None:
            """Each entry's balanceAfter is the one before it plus (or minus) the entry."""
            entries = self.run(self._history())
            assert entries[0].balance_after == self.balance
            for newer, older in itertools.pairwise(entries):
                delta = newer.amount if newer.type is EntrySide.CREDIT else -newer.amount
                assert newer.balance_after == older.balance_after + delta
            if len(entries) < MAX_PAGE_SIZE:
                assert entries[-1].balance_after == entries[-1].amount

        async def _history(self) -> list[BalanceEntryRow]:
            async with self.db.read() as reader:
                window = Window(limit=MAX_PAGE_SIZE)
                page = await balance_history_page(reader, self.viewer.customer_id, window)
            return page.rows

        async def _balance(self) -> Decimal:
            async with self.db.connect() as conn:
                stmt = select(Customer.balance).where(Customer.id == self.viewer.customer_id)
                return (await conn.execute(stmt)).scalar_one()

        def teardown(self) -> None:
            self.run(self.db.dispose())
            self.loop.close()

    return Ledger
