"""SLA (issue 14, point 4) and auto-close (point 1): breaches found once per target and
ticket, none while the clock is paused, escalation, resolved tickets closing by themselves,
and the admins' SLA policies. On SQLite and PostgreSQL, on a clock the tests move.
"""

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from domains.clock import ManualClock, utcnow
from domains.database import Database
from domains.errors import DomainError, Forbidden
from domains.identity.models import Role
from domains.support.assignment import drain_queue
from domains.support.autoclose import close_resolved_tickets
from domains.support.lifecycle import lock_ticket
from domains.support.models import (
    Presence,
    SupportOperator,
    TicketCategory,
    TicketPriority,
    TicketSlaPolicy,
)
from domains.support.sla_breach import BreachSweep, detect_breaches
from domains.support.sla_policy import SlaPolicyRow, sla_policies, update_sla_policy
from gateway.services import Services
from gateway.worker import SupportSweep, Worker
from tests.conftest import make_settings, migrated_database
from tests.support_fixtures import add_operator, assignments_of
from tests.support_fixtures import operator as operator_load
from tests.test_invoice_run import kabinet
from tests.test_relay import until
from tests.test_support_thread import (
    CLOSED,
    OPEN,
    PENDING,
    RESOLVED,
    START,
    counts,
    events_of,
    make_customer,
    make_staff,
    make_ticket,
    message,
    status,
    ticket_of,
)

AUTOCLOSE = timedelta(days=7)


async def sweep(db: Database, clock: ManualClock, **options: int) -> BreachSweep:
    return await detect_breaches(db, clock=clock, **options)


async def test_a_missed_first_response_is_one_breach_one_event_and_one_step_up(db: Database):
    customer = await make_customer(db)
    ticket = await make_ticket(db, customer)  # first response due at START + 4 h
    clock = ManualClock(START + timedelta(hours=4) - timedelta(seconds=1))
    assert await sweep(db, clock) == BreachSweep()

    clock.advance(timedelta(seconds=1))
    assert await sweep(db, clock) == BreachSweep(first_response=1, raised=1)
    breached = await ticket_of(db, ticket.id)
    assert breached.first_response_breached_at == clock.now()
    assert breached.resolution_breached_at is None
    assert breached.priority is TicketPriority.HIGH
    assert await events_of(db, ticket.id) == [
        {
            "type": "ticket.sla_breached",
            "version": 1,
            "ticket_id": ticket.id,
            "customer_id": customer.customer_id,
            "target": "first_response",
            "due_at": (START + timedelta(hours=4)).isoformat(),
            "priority": "normal",
            "assignee_id": None,
        },
        {
            "type": "ticket.priority_changed",
            "version": 1,
            "ticket_id": ticket.id,
            "customer_id": customer.customer_id,
            "old_priority": "normal",
            "new_priority": "high",
            "reason": "escalation",
        },
    ]

    clock.advance(timedelta(hours=1))
    assert await sweep(db, clock) == BreachSweep()
    assert len(await events_of(db, ticket.id)) == 2


async def test_both_targets_breach_once_each_and_an_urgent_ticket_stays_urgent(db: Database):
    customer = await make_customer(db)
    ticket = await make_ticket(db, customer, priority=TicketPriority.URGENT)
    clock = ManualClock(START + timedelta(days=2))
    assert await sweep(db, clock, batch_size=1) == BreachSweep(first_response=1, resolution=1)
    assert [(e["type"], e.get("target")) for e in await events_of(db, ticket.id)] == [
        ("ticket.sla_breached", "first_response"),
        ("ticket.sla_breached", "resolution"),
    ]
    assert (await ticket_of(db, ticket.id)).priority is TicketPriority.URGENT
    assert await sweep(db, clock) == BreachSweep()


async def test_answered_waiting_and_finished_tickets_do_not_breach(db: Database):
    customer, operator = await make_customer(db), await make_staff(db)
    clock = ManualClock(START + timedelta(hours=1))
    answered = await make_ticket(db, customer)
    await message(db, operator, answered, clock, "On it")
    waiting = await make_ticket(db, customer, status=OPEN, first_response_at=START)
    await status(db, operator, waiting, PENDING, clock)
    resolved = await make_ticket(db, customer, status=RESOLVED, resolved_at=START)
    closed = await make_ticket(db, customer, status=CLOSED, closed_at=START)

    clock.advance(timedelta(hours=5))  # past every first response due time
    assert await sweep(db, clock) == BreachSweep()

    clock.advance(timedelta(days=1))  # past every resolution due time
    assert await sweep(db, clock) == BreachSweep(resolution=1, raised=1)
    assert (await ticket_of(db, answered.id)).resolution_breached_at == clock.now()
    for quiet in (waiting, resolved, closed):
        assert await events_of(db, quiet.id, "ticket.sla_breached") == []


async def test_the_paused_time_moves_the_breach_later(db: Database):
    customer, operator = await make_customer(db), await make_staff(db)
    ticket = await make_ticket(db, customer, status=OPEN, first_response_at=START)
    clock = ManualClock(START + timedelta(hours=20))
    await status(db, operator, ticket, PENDING, clock)
    clock.advance(timedelta(hours=10))  # resolution was due at START + 24 h
    assert await sweep(db, clock) == BreachSweep()
    await message(db, customer, ticket, clock, "Here are the photos you asked for")
    resumed = await ticket_of(db, ticket.id)
    assert resumed.resolution_due_at == START + timedelta(hours=34)

    clock.advance(timedelta(hours=4) - timedelta(seconds=1))
    assert await sweep(db, clock) == BreachSweep()
    clock.advance(timedelta(seconds=1))
    assert await sweep(db, clock) == BreachSweep(resolution=1, raised=1)
    [breach] = await events_of(db, ticket.id, "ticket.sla_breached")
    assert breach["due_at"] == (START + timedelta(hours=34)).isoformat()


async def test_many_breaches_go_in_batches_each_once(db: Database):
    customer = await make_customer(db)
    made = [await make_ticket(db, customer, at=START + timedelta(minutes=n)) for n in range(5)]
    clock = ManualClock(START + timedelta(hours=5))
    assert await sweep(db, clock, batch_size=2) == BreachSweep(first_response=5, raised=5)
    assert await sweep(db, clock, batch_size=2) == BreachSweep()
    for ticket in made:
        assert len(await events_of(db, ticket.id, "ticket.sla_breached")) == 1


async def test_a_batch_holds_at_least_one_ticket(db: Database):
    with pytest.raises(ValueError, match="at least one"):
        await sweep(db, ManualClock(START), batch_size=0)
    with pytest.raises(ValueError, match="at least one"):
        await close_resolved_tickets(db, after=AUTOCLOSE, clock=ManualClock(START), batch_size=0)


@pytest.mark.postgres
async def test_the_sweep_passes_a_ticket_someone_holds_and_never_waits():
    async with migrated_database("kabinet_sla") as url:
        db = Database(url)
        try:
            customer = await make_customer(db)
            held, free = await make_ticket(db, customer), await make_ticket(db, customer)
            clock = ManualClock(START + timedelta(hours=5))
            async with db.transaction() as replying:
                assert await lock_ticket(replying, held.id) is not None
                async with asyncio.timeout(30):  # a guard against a wait, never a measure
                    assert await sweep(db, clock) == BreachSweep(first_response=1, raised=1)
            assert (await ticket_of(db, held.id)).first_response_breached_at is None
            assert (await ticket_of(db, free.id)).first_response_breached_at == clock.now()
            assert await sweep(db, clock) == BreachSweep(first_response=1, raised=1)

            # The auto-close passes a held ticket the same way.
            resolved = [
                await make_ticket(db, customer, status=RESOLVED, resolved_at=START)
                for _ in range(2)
            ]
            clock.advance(AUTOCLOSE)
            async with db.transaction() as reopening:
                assert await lock_ticket(reopening, resolved[0].id) is not None
                async with asyncio.timeout(30):
                    assert await close_resolved_tickets(db, after=AUTOCLOSE, clock=clock) == 1
            assert await close_resolved_tickets(db, after=AUTOCLOSE, clock=clock) == 1
        finally:
            await db.dispose()


async def test_resolved_tickets_close_by_themselves_after_the_autoclose_days(db: Database):
    customer, operator = await make_customer(db), await make_staff(db)
    clock = ManualClock(START)
    ticket = await make_ticket(db, customer, status=OPEN, first_response_at=START)
    await status(db, operator, ticket, RESOLVED, clock)
    later = await make_ticket(db, customer, status=OPEN, first_response_at=START)
    clock.advance(timedelta(days=1))
    await status(db, operator, later, RESOLVED, clock)
    still_open = await make_ticket(db, customer, status=OPEN)

    clock.advance(AUTOCLOSE - timedelta(days=1) - timedelta(seconds=1))
    assert await close_resolved_tickets(db, after=AUTOCLOSE, clock=clock) == 0
    clock.advance(timedelta(seconds=1))
    assert await close_resolved_tickets(db, after=AUTOCLOSE, clock=clock, batch_size=1) == 1
    closed = await ticket_of(db, ticket.id)
    assert (closed.status, closed.closed_at, closed.updated_at) == (
        CLOSED,
        clock.now(),
        clock.now(),
    )
    assert closed.resolved_at == START
    [*_, event] = await events_of(db, ticket.id, "ticket.status_changed")
    assert (event["old_status"], event["new_status"], event["changed_by"]) == (
        "resolved",
        "closed",
        None,
    )
    assert (await ticket_of(db, later.id)).status is RESOLVED
    assert await close_resolved_tickets(db, after=AUTOCLOSE, clock=clock) == 0

    clock.advance(timedelta(days=1))
    assert await close_resolved_tickets(db, after=AUTOCLOSE, clock=clock) == 1
    assert (await ticket_of(db, still_open.id)).status is OPEN
    # Closed is final: the customer's message no longer reopens it.
    with pytest.raises(DomainError, match="closed"):
        await message(db, customer, ticket, clock)


async def test_admins_read_and_edit_the_sla_policies(db: Database):
    admin = await make_staff(db, Role.ADMIN)
    async with db.read() as reader:
        seeded = await sla_policies(reader)
    assert [(p.priority, p.first_response_minutes, p.resolution_minutes) for p in seeded] == [
        (TicketPriority.URGENT, 15, 240),
        (TicketPriority.HIGH, 60, 480),
        (TicketPriority.NORMAL, 240, 1440),
        (TicketPriority.LOW, 480, 4320),
    ]
    clock = ManualClock(START)
    updated = await update_sla_policy(
        db,
        admin,
        priority=TicketPriority.HIGH,
        first_response_minutes=30,
        resolution_minutes=600,
        clock=clock,
    )
    assert updated == SlaPolicyRow(TicketPriority.HIGH, 30, 600, START, admin.user_id)
    async with db.read() as reader:
        assert (await sla_policies(reader))[1] == updated


@pytest.mark.parametrize(
    ("first", "resolution", "problem"),
    [
        (0, 60, "firstResponseMinutes is 1 to"),
        (60, -1, "resolutionMinutes is 1 to"),
        (10, 366 * 24 * 60 + 1, "resolutionMinutes is 1 to"),
        (120, 60, "no later than the resolution"),
    ],
)
async def test_bad_sla_policies_are_refused_and_nothing_written(
    db: Database, first: int, resolution: int, problem: str
):
    admin = await make_staff(db, Role.ADMIN)
    async with db.connect() as conn:
        before = (await conn.execute(select(TicketSlaPolicy.__table__))).all()
    with pytest.raises(DomainError, match=problem) as refused:
        await update_sla_policy(
            db,
            admin,
            priority=TicketPriority.LOW,
            first_response_minutes=first,
            resolution_minutes=resolution,
        )
    assert refused.value.code == "BAD_USER_INPUT"
    with pytest.raises(Forbidden):
        await update_sla_policy(
            db,
            await make_staff(db),
            priority=TicketPriority.LOW,
            first_response_minutes=1,
            resolution_minutes=2,
        )
    async with db.connect() as conn:
        assert (await conn.execute(select(TicketSlaPolicy.__table__))).all() == before
    assert await counts(db) == (0, 0)


async def test_escalation_moves_a_ticket_off_an_absent_assignee(db: Database):
    customer = await make_customer(db)
    away = await add_operator(
        db, [TicketCategory.NO_CONNECTION], presence=Presence.AWAY, open_tickets=1
    )
    there = await add_operator(db, [TicketCategory.NO_CONNECTION], capacity=1)
    online = await add_operator(db, [TicketCategory.NO_CONNECTION], open_tickets=1)
    ticket = await make_ticket(db, customer, assignee_id=away.user_id)
    kept = await make_ticket(db, customer, assignee_id=online.user_id)
    clock = ManualClock(START + timedelta(hours=4))

    assert await sweep(db, clock) == BreachSweep(first_response=2, raised=2, reassigned=1)
    moved = await ticket_of(db, ticket.id)
    assert (moved.assignee_id, moved.priority) == (there.user_id, TicketPriority.HIGH)
    assert [(await operator_load(db, who.user_id))[0] for who in (away, there, online)] == [
        0,
        1,
        1,
    ]
    assert await assignments_of(db, ticket.id) == [(there.user_id, None, "escalation")]
    assert [e["type"] for e in await events_of(db, ticket.id)] == [
        "ticket.sla_breached",
        "ticket.priority_changed",
        "ticket.assigned",
    ]
    [assigned] = await events_of(db, ticket.id, "ticket.assigned")
    assert (assigned["previous_operator_id"], assigned["priority"]) == (away.user_id, "high")
    # The present assignee keeps theirs.
    assert (await ticket_of(db, kept.id)).assignee_id == online.user_id
    assert await assignments_of(db, kept.id) == []


async def test_with_nobody_there_an_escalated_ticket_goes_back_to_the_queue(db: Database):
    customer = await make_customer(db)
    offline = await add_operator(
        db, [TicketCategory.NO_CONNECTION], presence=Presence.OFFLINE, open_tickets=1
    )
    ticket = await make_ticket(
        db, customer, status=OPEN, assignee_id=offline.user_id, first_response_at=START
    )
    clock = ManualClock(START + timedelta(days=1))
    assert await sweep(db, clock) == BreachSweep(resolution=1, raised=1, reassigned=1)
    queued = await ticket_of(db, ticket.id)
    assert (queued.assignee_id, queued.status) == (None, OPEN)
    assert (await operator_load(db, offline.user_id))[0] == 0
    assert await assignments_of(db, ticket.id) == []

    # The first operator to come online with the skill takes it from the queue.
    back = await add_operator(db, [TicketCategory.NO_CONNECTION], presence=Presence.OFFLINE)
    async with db.transaction() as session:
        await session.execute(
            update(SupportOperator)
            .where(SupportOperator.user_id == back.user_id)
            .values(presence=Presence.ONLINE)
        )
        await drain_queue(session, back.user_id, clock.now())
    assert (await ticket_of(db, ticket.id)).assignee_id == back.user_id


@pytest.mark.postgres
async def test_concurrent_sweeps_escalate_each_breach_once_within_capacity():
    """Two workers sweep at once (and reassign between the same operators): each breach is
    found once, no operator goes past capacity, and neither waits on the other for good."""
    async with migrated_database("kabinet_sla_race") as url:
        db = Database(url)
        try:
            customer = await make_customer(db)
            absent = [
                await add_operator(
                    db, [TicketCategory.NO_CONNECTION], presence=Presence.AWAY, open_tickets=5
                )
                for _ in range(4)
            ]
            there = [await add_operator(db, [TicketCategory.NO_CONNECTION]) for _ in range(2)]
            made = [
                await make_ticket(
                    db, customer, assignee_id=absent[n % 4].user_id, at=START + timedelta(seconds=n)
                )
                for n in range(20)
            ]
            clock = ManualClock(START + timedelta(hours=5))
            async with asyncio.timeout(60):
                swept = await asyncio.gather(
                    *(detect_breaches(db, clock=clock, batch_size=3) for _ in range(2))
                )
            assert sum(part.first_response for part in swept) == 20
            assert sum(part.reassigned for part in swept) == 20
            loads = [(await operator_load(db, who.user_id))[0] for who in (*absent, *there)]
            assert loads == [0, 0, 0, 0, 5, 5]
            queued = [
                ticket for ticket in made if (await ticket_of(db, ticket.id)).assignee_id is None
            ]
            assert len(queued) == 10
            for ticket in made:
                assert len(await events_of(db, ticket.id, "ticket.sla_breached")) == 1
        finally:
            await db.dispose()


# The support schedule: in the worker on its clock, and as `kabinet support sweep`.


def support_worker(url: str, signing_key: bytes, clock: ManualClock, **settings: object) -> Worker:
    services = Services.from_settings(make_settings(url, signing_key, **settings), clock)
    return Worker(services, consumers=[], support_schedule=True)


async def test_a_support_tick_escalates_breaches_and_closes_resolved_tickets(
    db_url: str, db: Database, signing_key: bytes
):
    customer = await make_customer(db)
    late = await make_ticket(db, customer)
    resolved = await make_ticket(db, customer, status=RESOLVED, resolved_at=START)
    clock = ManualClock(START + timedelta(days=2))
    worker = support_worker(db_url, signing_key, clock, ticket_autoclose_days=3)
    try:
        assert await worker.support_tick() == SupportSweep(
            BreachSweep(first_response=1, resolution=1, raised=2), closed=0
        )
        clock.advance(timedelta(days=1))
        assert await worker.support_tick() == SupportSweep(BreachSweep(), closed=1)
    finally:
        await worker.services.aclose()
    assert (await ticket_of(db, late.id)).priority is TicketPriority.URGENT
    assert (await ticket_of(db, resolved.id)).status is CLOSED


async def test_the_worker_runs_the_support_schedule_only_when_told(
    sqlite_url: str, signing_key: bytes
):
    db = Database(sqlite_url)
    try:
        ticket = await make_ticket(db, await make_customer(db))
        clock = ManualClock(START + timedelta(hours=5))
        for on in (False, True):
            services = Services.from_settings(make_settings(sqlite_url, signing_key), clock)
            worker = Worker(services, consumers=[], support_schedule=on)
            await worker.start()
            try:
                if on:

                    async def breached() -> bool:
                        return (
                            await ticket_of(db, ticket.id)
                        ).first_response_breached_at is not None

                    await until(breached)
                else:
                    await asyncio.sleep(0.2)  # the worker's first ticks, were they scheduled
                    assert (await ticket_of(db, ticket.id)).first_response_breached_at is None
            finally:
                await worker.stop()
                await services.aclose()
    finally:
        await db.dispose()


async def test_the_cli_sweeps_once_on_sqlite(sqlite_url: str):
    db = Database(sqlite_url)
    try:
        customer = await make_customer(db)
        # Past by the system's clock, which the command runs on.
        days_ago = utcnow() - timedelta(days=8)
        await make_ticket(db, customer, at=days_ago)
        await make_ticket(db, customer, status=RESOLVED, at=days_ago, resolved_at=days_ago)
        first = await kabinet(sqlite_url, "support", "sweep")
        assert first.returncode == 0, first.stderr
        assert "SLA breaches: 1 first response, 1 resolution; 2 priorities raised" in first.stdout
        assert "resolved tickets closed: 1" in first.stdout
        again = await kabinet(sqlite_url, "support", "sweep")
        assert "SLA breaches: 0 first response, 0 resolution" in again.stdout
        assert "resolved tickets closed: 0" in again.stdout
    finally:
        await db.dispose()
