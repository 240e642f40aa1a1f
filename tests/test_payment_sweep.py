"""The sweep: stale pending card payments end as the provider says (or expire), old
idempotency keys go; on PostgreSQL and SQLite, against the sandbox acquirer over HTTP.

Webhooks are lost on purpose (`?deliver=0`): the sweep is what notices the result.
A payment still pending is canceled at the sandbox, which then refuses the payer.
Each test has a database of its own (conftest's `db`): the sweep looks at every payment.
"""

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import func, insert, select, update

from adapters.acquirer_client import SandboxProvider
from adapters.sandbox_acquirer import create_sandbox_app
from domains.billing.card import Acquiring, top_up_balance
from domains.billing.idempotency import KEY_TTL
from domains.billing.models import IdempotencyKey, Payment, PaymentStatus, Transaction
from domains.billing.provider import ProviderPayment
from domains.billing.reconcile import reconcile
from domains.billing.sweep import PendingSweep, expire_pending_payments, purge_idempotency_keys
from domains.billing.webhook import SUCCEEDED, ProviderNotice, parse_notice, settle
from domains.clock import utcnow
from domains.database import Database
from domains.identity.viewer import Viewer
from gateway.cli import main
from tests.servers import free_socket, serve
from tests.test_payments import balance_of, make_customer

TTL = timedelta(hours=1)


@pytest.fixture
def sandbox_url() -> Iterator[str]:
    # Webhooks go nowhere: every settlement in these tests is sent with ?deliver=0.
    app = create_sandbox_app("http://127.0.0.1:9/unused", b"unused-secret")
    with serve(app, free_socket()) as url:
        yield url


async def _start(db: Database, acquiring: Acquiring, viewer: Viewer, amount: str) -> int:
    started = await top_up_balance(
        db, acquiring, viewer, amount=Decimal(amount), idempotency_key=amount
    )
    return started.payment_id


async def _age(db: Database, payment_id: int, age: timedelta) -> None:
    async with db.transaction() as session:
        await session.execute(
            update(Payment).where(Payment.id == payment_id).values(created_at=utcnow() - age)
        )


async def _provider_id(db: Database, payment_id: int) -> str:
    async with db.connect() as conn:
        stmt = select(Payment.provider_payment_id).where(Payment.id == payment_id)
        return (await conn.execute(stmt)).scalar_one()


async def _at_sandbox(sandbox_url: str, provider_id: str, outcome: str) -> None:
    async with httpx.AsyncClient(base_url=sandbox_url) as http:
        response = await http.post(f"/sandbox/payments/{provider_id}/{outcome}?deliver=0")
    assert response.status_code == 200, response.text
    assert response.json()["webhook_status"] is None


async def _statuses(db: Database, ids: list[int]) -> list[PaymentStatus]:
    async with db.connect() as conn:
        stmt = select(Payment.id, Payment.status).where(Payment.id.in_(ids))
        found = dict((await conn.execute(stmt)).all())
    return [found[i] for i in ids]


async def _entries(db: Database, payment_id: int) -> int:
    async with db.connect() as conn:
        stmt = select(func.count()).where(Transaction.payment_id == payment_id)
        return (await conn.execute(stmt)).scalar_one()


async def test_stale_pending_payments_end_as_the_provider_says(db: Database, sandbox_url: str):
    acquiring = Acquiring(SandboxProvider(sandbox_url), "https://kabinet.example/")
    viewer, _ = await make_customer(db, "10.00", [])
    captured = await _start(db, acquiring, viewer, "25.00")
    abandoned = await _start(db, acquiring, viewer, "30.00")
    declined = await _start(db, acquiring, viewer, "35.00")
    recent = await _start(db, acquiring, viewer, "40.00")
    for payment_id in (captured, abandoned, declined):
        await _age(db, payment_id, TTL + timedelta(minutes=1))
    await _at_sandbox(sandbox_url, await _provider_id(db, captured), "succeed")
    await _at_sandbox(sandbox_url, await _provider_id(db, declined), "fail")
    await _at_sandbox(sandbox_url, await _provider_id(db, recent), "succeed")

    swept = await expire_pending_payments(db, acquiring.provider, older_than=TTL, now=utcnow())

    assert swept == PendingSweep(settled=2, expired=1, unreachable=0)
    assert await _statuses(db, [captured, abandoned, declined, recent]) == [
        PaymentStatus.SUCCEEDED,
        PaymentStatus.FAILED,
        PaymentStatus.FAILED,
        PaymentStatus.PENDING,
    ]
    assert await balance_of(db, viewer.customer_id) == Decimal("35.00")
    assert [await _entries(db, p) for p in (captured, abandoned, declined)] == [2, 0, 0]
    assert await reconcile(db) == []

    # The lost webhook arriving after all changes nothing; nor does sweeping again.
    notice = ProviderNotice(
        "evt-late", SUCCEEDED, await _provider_id(db, captured), Decimal("25.00"), "RUB"
    )
    assert await settle(db, "sandbox", notice)
    swept = await expire_pending_payments(db, acquiring.provider, older_than=TTL, now=utcnow())
    assert swept == PendingSweep()
    assert await balance_of(db, viewer.customer_id) == Decimal("35.00")
    assert await _entries(db, captured) == 2
    assert await reconcile(db) == []


async def test_webhooks_and_the_sweep_settling_one_payment_at_once_credit_once(
    db: Database, sandbox_url: str
):
    """The sweep and webhooks under different event ids settle one payment at the same
    time, round after round: no deadlock (every path locks the customer before it records
    the event, whose foreign key share-locks the payment), and the money lands once."""
    acquiring = Acquiring(SandboxProvider(sandbox_url), "https://kabinet.example/")
    viewer, _ = await make_customer(db, "0", [])
    rounds = 10
    for round in range(1, rounds + 1):
        amount = Decimal(f"{round}.00")
        payment_id = await _start(db, acquiring, viewer, str(amount))
        await _age(db, payment_id, TTL + timedelta(minutes=1))
        provider_id = await _provider_id(db, payment_id)
        await _at_sandbox(sandbox_url, provider_id, "succeed")
        webhooks = [
            settle(
                db,
                "sandbox",
                ProviderNotice(f"evt-{round}-{i}", SUCCEEDED, provider_id, amount, "RUB"),
            )
            for i in range(4)
        ]
        sweep = expire_pending_payments(db, acquiring.provider, older_than=TTL, now=utcnow())
        await asyncio.gather(sweep, *webhooks)
        assert await _entries(db, payment_id) == 2
    assert await balance_of(db, viewer.customer_id) == Decimal(rounds * (rounds + 1) // 2)
    assert await reconcile(db) == []


async def test_an_abandoned_payment_is_canceled_and_its_payer_refused(
    db: Database, sandbox_url: str
):
    acquiring = Acquiring(SandboxProvider(sandbox_url), "https://kabinet.example/")
    viewer, _ = await make_customer(db, "10.00", [])
    payment_id = await _start(db, acquiring, viewer, "20.00")
    await _age(db, payment_id, TTL * 2)
    provider_id = await _provider_id(db, payment_id)

    swept = await expire_pending_payments(db, acquiring.provider, older_than=TTL, now=utcnow())

    assert swept == PendingSweep(expired=1)
    assert (await acquiring.provider.get_payment(provider_id)).status == "canceled"
    async with httpx.AsyncClient(base_url=sandbox_url) as http:
        confirm = await http.post(f"/sandbox/payments/{provider_id}/succeed")
    assert confirm.status_code == 409
    assert confirm.json()["payment"]["status"] == "canceled"
    assert (await acquiring.provider.get_payment(provider_id)).status == "canceled"
    assert await _statuses(db, [payment_id]) == [PaymentStatus.FAILED]
    assert await balance_of(db, viewer.customer_id) == Decimal("10.00")
    assert await _entries(db, payment_id) == 0
    assert await reconcile(db) == []


class PayerConfirmsMeanwhile(SandboxProvider):
    """The sandbox, with the payer confirming right after the sweep found the payment
    pending and before its cancel: the race the cancel's refusal answers."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        self.events: list[dict] = []

    async def get_payment(self, provider_payment_id: str) -> ProviderPayment:
        state = await super().get_payment(provider_payment_id)
        async with httpx.AsyncClient(base_url=self.base_url) as http:
            response = await http.post(f"/sandbox/payments/{provider_payment_id}/succeed?deliver=0")
        assert response.status_code == 200, response.text
        self.events.append(response.json()["event"])
        return state


async def test_a_payment_confirmed_before_the_cancel_is_settled_once(
    db: Database, sandbox_url: str
):
    acquiring = Acquiring(SandboxProvider(sandbox_url), "https://kabinet.example/")
    viewer, _ = await make_customer(db, "10.00", [])
    payment_id = await _start(db, acquiring, viewer, "45.00")
    await _age(db, payment_id, TTL * 2)
    provider_id = await _provider_id(db, payment_id)
    racing = PayerConfirmsMeanwhile(sandbox_url)

    swept = await expire_pending_payments(db, racing, older_than=TTL, now=utcnow())

    assert swept == PendingSweep(settled=1)
    assert (await acquiring.provider.get_payment(provider_id)).status == "succeeded"
    assert await _statuses(db, [payment_id]) == [PaymentStatus.SUCCEEDED]
    assert await balance_of(db, viewer.customer_id) == Decimal("55.00")
    # The real webhook arriving late, and the sweep's own event again, credit nothing.
    [event] = racing.events
    assert await settle(db, "sandbox", parse_notice(event))
    sweep_event = ProviderNotice(
        f"sweep-{provider_id}", SUCCEEDED, provider_id, Decimal("45.00"), "RUB"
    )
    assert not await settle(db, "sandbox", sweep_event)
    assert (
        await expire_pending_payments(db, acquiring.provider, older_than=TTL, now=utcnow())
        == PendingSweep()
    )
    assert await balance_of(db, viewer.customer_id) == Decimal("55.00")
    assert await _entries(db, payment_id) == 2
    assert await reconcile(db) == []


async def test_an_unreachable_provider_leaves_payments_pending(db: Database, sandbox_url: str):
    acquiring = Acquiring(SandboxProvider(sandbox_url), "https://kabinet.example/")
    viewer, _ = await make_customer(db, "0", [])
    payment_id = await _start(db, acquiring, viewer, "15.00")
    await _age(db, payment_id, TTL * 2)
    gone = SandboxProvider("http://127.0.0.1:9", timeout=1.0)
    swept = await expire_pending_payments(db, gone, older_than=TTL, now=utcnow())
    assert swept == PendingSweep(unreachable=1)
    assert await _statuses(db, [payment_id]) == [PaymentStatus.PENDING]
    # With card payments switched off nothing can confirm it any more: it expires.
    swept = await expire_pending_payments(db, None, older_than=TTL, now=utcnow())
    assert swept == PendingSweep(expired=1)
    assert await _statuses(db, [payment_id]) == [PaymentStatus.FAILED]
    assert await reconcile(db) == []


async def test_old_idempotency_keys_are_purged_live_ones_kept(db: Database):
    viewer, _ = await make_customer(db, "0", [])
    now = utcnow()
    ages = {"fresh": timedelta(hours=1), "day-old": KEY_TTL, "stale": timedelta(hours=30)}
    async with db.transaction() as session:
        for key, age in ages.items():
            await session.execute(
                insert(IdempotencyKey).values(
                    customer_id=viewer.customer_id,
                    key=key,
                    fingerprint="0" * 64,
                    created_at=now - age,
                    expires_at=now - age + KEY_TTL,
                )
            )
    assert await purge_idempotency_keys(db, older_than=KEY_TTL, now=now) == 1
    async with db.connect() as conn:
        left = (await conn.execute(select(IdempotencyKey.key).order_by(IdempotencyKey.key))).all()
    assert [row.key for row in left] == ["day-old", "fresh"]
    with pytest.raises(ValueError, match="answer retries"):
        await purge_idempotency_keys(db, older_than=timedelta(hours=23), now=now)


def test_cli_billing_sweep(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setenv("KABINET_DATABASE_URL", db_url)
    monkeypatch.delenv("KABINET_PAYMENT_PROVIDER_URL", raising=False)
    main(["billing", "sweep"])
    out = capsys.readouterr().out
    assert "0 settled, 0 expired, 0 left pending" in out
    assert "idempotency keys deleted: 0" in out
