"""The support consumer reacting to payments, end to end: pay_invoice -> outbox -> relay ->
Kafka (Tansu) -> the `support` consumer in the worker -> the customer's tickets.

A billing ticket hears of each payment in its thread; once the customer owes nothing, a
no-connection ticket of a suspended customer is resolved by the system and a ticket the
service-suspended rule raised comes back down; a redelivered payment changes nothing."""

import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import pytest_asyncio
from sqlalchemy import insert, select

from domains.billing.models import Invoice, InvoiceStatus, PaymentMethod
from domains.billing.pay_invoice import pay_invoice
from domains.clock import ManualClock
from domains.customers.models import ContractStatus
from domains.database import Database
from domains.identity.viewer import Viewer
from domains.support.consumer import CONSUMER_NAME
from domains.support.models import (
    AuthorKind,
    RuleCondition,
    TicketCategory,
    TicketChannel,
    TicketMessage,
    TicketPriority,
    TicketPriorityRule,
    TicketStatus,
)
from domains.support.ticket import TicketRow, tickets_by_ids
from domains.support.ticket_create import create_ticket
from gateway.demo import _book_top_ups
from tests.conftest import migrated_database
from tests.event_rig import running_worker
from tests.support_fixtures import add_customer, events_of

DAY = timedelta(days=1)


@pytest_asyncio.fixture(scope="module")
async def support_url() -> AsyncIterator[str]:
    async with migrated_database("kabinet_support_consumer") as url:
        yield url


@pytest.fixture(params=["sqlite", "kafka"])
def backend(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    """The embedded mode (SQLite, the in-process bus), or PostgreSQL and the broker."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url"), None
    return request.getfixturevalue("support_url"), request.getfixturevalue("kafka_bootstrap")


async def owing(db: Database, customer: Viewer, amount: str) -> int:
    """An issued invoice of `amount` for the customer, and as much on their balance (a card
    top-up, as the acquirer's webhook books it): the invoice's id."""
    now = datetime.now(UTC)
    async with db.transaction() as session:
        invoice_id = (
            await session.execute(
                insert(Invoice)
                .values(
                    customer_id=customer.customer_id,
                    number=f"T-{secrets.token_hex(6)}",
                    period_start=date(2026, 11, 1),
                    period_end=date(2026, 11, 30),
                    amount=Decimal(amount),
                    currency="RUB",
                    status=InvoiceStatus.ISSUED,
                    issued_at=now,
                    due_date=date(2026, 12, 10),
                )
                .returning(Invoice.id)
            )
        ).scalar_one()
    await _book_top_ups(db, [(customer.customer_id, Decimal(amount), now)])
    return invoice_id


async def pay(db: Database, customer: Viewer, invoice_id: int, amount: str | None) -> None:
    await pay_invoice(
        db,
        customer,
        invoice_id=invoice_id,
        method=PaymentMethod.BALANCE,
        amount=None if amount is None else Decimal(amount),
        idempotency_key=str(uuid.uuid4()),
    )


async def ticket(db: Database, ticket_id: int) -> TicketRow:
    async with db.read() as reader:
        return (await tickets_by_ids(reader, [ticket_id]))[ticket_id]


async def system_messages(db: Database, ticket_id: int) -> list[str]:
    async with db.connect() as conn:
        rows = await conn.execute(
            select(TicketMessage.body, TicketMessage.internal)
            .where(
                TicketMessage.ticket_id == ticket_id,
                TicketMessage.author_kind == AuthorKind.SYSTEM,
            )
            .order_by(TicketMessage.id)
        )
        found = list(rows)
    assert not any(internal for _, internal in found), "the customer reads them"
    return [body for body, _ in found]


async def suspended_rule(db: Database) -> int:
    async with db.connect() as conn:
        return (
            await conn.execute(
                select(TicketPriorityRule.id).where(
                    TicketPriorityRule.condition == RuleCondition.SERVICE_SUSPENDED
                )
            )
        ).scalar_one()


async def test_payments_reach_the_customers_tickets_once(
    backend: tuple[str, str | None], signing_key: bytes
) -> None:
    async with running_worker(backend[0], signing_key, backend[1]) as rig:
        db = rig.services.db
        now = datetime.now(UTC)
        customer, contract_id = await add_customer(db, contract_status=ContractStatus.SUSPENDED)
        # A fault, not a debt: this customer's contract is active.
        other, other_contract = await add_customer(db)

        async def opened(who: Viewer, category: TicketCategory, contract: int, at: datetime) -> int:
            created = await create_ticket(
                db,
                who,
                category=category,
                subject=f"About {category.value}",
                body="Please help.",
                contract_id=contract,
                channel=TicketChannel.WEB,
                clock=ManualClock(at),
            )
            return created.ticket.id

        # Weeks apart, so no ticket is a repeat (which would raise it by another rule).
        billing = await opened(customer, TicketCategory.BILLING, contract_id, now - 40 * DAY)
        offline = await opened(customer, TicketCategory.NO_CONNECTION, contract_id, now - 20 * DAY)
        slow = await opened(customer, TicketCategory.SLOW_SPEED, contract_id, now)
        fault = await opened(other, TicketCategory.NO_CONNECTION, other_contract, now)
        # Opened after the payments below: none of them is about it.
        later = await opened(customer, TicketCategory.BILLING, contract_id, now + DAY)
        raised_by = await suspended_rule(db)
        assert ((await ticket(db, slow)).priority, (await ticket(db, slow)).priority_rule_id) == (
            TicketPriority.HIGH,
            raised_by,
        )
        invoice_id = await owing(db, customer, "500.00")
        other_invoice = await owing(db, other, "100.00")

        # Part of the invoice: the billing ticket hears of it; the debt is not gone.
        await pay(db, customer, invoice_id, "200.00")
        await rig.until_outcomes(CONSUMER_NAME, handled=1)
        [first] = await system_messages(db, billing)
        assert first.startswith("Payment received: 200.00 RUB for invoice T-")
        assert (await ticket(db, offline)).status is TicketStatus.NEW
        assert (await ticket(db, slow)).priority is TicketPriority.HIGH

        # The rest: payment.created and invoice.paid, and nothing is owed any more.
        await pay(db, customer, invoice_id, None)
        await pay(db, other, other_invoice, None)
        await rig.until_outcomes(CONSUMER_NAME, handled=5)
        # The billing ticket was raised by the service-suspended rule as well: it comes back
        # down with the debt gone.
        assert (await system_messages(db, billing))[1:] == [
            first.replace("200.00", "300.00"),
            "The account owes nothing now: this ticket's priority is normal again (was high).",
            f"Invoice {first.split()[-1].rstrip('.')} is paid in full (500.00 RUB).",
        ]
        assert (await ticket(db, billing)).priority is TicketPriority.NORMAL
        resolved = await ticket(db, offline)
        assert (resolved.status, resolved.resolved_at is not None) == (TicketStatus.RESOLVED, True)
        [note] = await system_messages(db, offline)
        assert note.startswith("The account owes nothing now")
        lowered = await ticket(db, slow)
        assert (lowered.status, lowered.priority, lowered.priority_rule_id) == (
            TicketStatus.NEW,
            TicketPriority.NORMAL,
            None,
        )
        assert (await ticket(db, fault)).status is TicketStatus.NEW
        assert await system_messages(db, fault) == []
        assert await system_messages(db, later) == []
        changes = [
            (kind, payload)
            for kind, payload in await events_of(db, offline)
            if kind == "ticket.status_changed"
        ]
        assert [(p["old_status"], p["new_status"], p["changed_by"]) for _, p in changes] == [
            ("new", "resolved", None)
        ]
        [(_, priority_change)] = [
            (kind, payload)
            for kind, payload in await events_of(db, slow)
            if kind == "ticket.priority_changed"
        ]
        assert (
            priority_change["old_priority"],
            priority_change["new_priority"],
            priority_change["reason"],
        ) == ("high", "normal", "payment")

        # Published again: the same five events, seen as duplicates, change nothing.
        before = {t: await system_messages(db, t) for t in (billing, offline, slow, fault)}
        await rig.redeliver()
        await rig.until_outcomes(CONSUMER_NAME, handled=5, duplicate=5)
        assert {t: await system_messages(db, t) for t in before} == before
        assert await ticket(db, offline) == resolved
        assert await ticket(db, slow) == lowered
