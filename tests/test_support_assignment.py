"""Assigning tickets: least loaded with ties to the least recently assigned, the queue and
its draining, releasing a slot, staff reassigning, and capacity under concurrent tickets
on PostgreSQL."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from sqlalchemy import func, insert, select, update

from domains.clock import ManualClock
from domains.customers.models import ContractStatus
from domains.database import Database
from domains.errors import DomainError
from domains.identity.models import Role, Session
from domains.identity.viewer import Viewer
from domains.support.assignment import release
from domains.support.models import (
    Presence,
    SupportOperator,
    Ticket,
    TicketCategory,
    TicketChannel,
    TicketPriority,
    TicketStatus,
)
from domains.support.operator_admin import save_operator
from domains.support.presence import offline_without_sessions, set_presence
from domains.support.ticket import TicketRow, tickets_by_ids
from domains.support.ticket_assign import reassign_ticket
from domains.support.ticket_create import TicketCreated, create_ticket
from tests.conftest import migrated_database
from tests.support_fixtures import (
    add_customer,
    add_operator,
    add_staff,
    assignments_of,
    counts,
    events_of,
    operator,
    quiet,
)

NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
BILLING = [TicketCategory.BILLING]


@pytest_asyncio.fixture(scope="module")
async def support_pg_url() -> AsyncIterator[str]:
    async with migrated_database("kabinet_assign") as url:
        yield url


@pytest_asyncio.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, support_pg_url: str) -> AsyncIterator[Database]:
    sqlite = request.param == "sqlite"
    database = Database(request.getfixturevalue("sqlite_url") if sqlite else support_pg_url)
    await quiet(database)
    yield database
    await database.dispose()


async def _open(
    db: Database,
    customer: Viewer | None = None,
    category: TicketCategory = TicketCategory.BILLING,
    *,
    now: datetime = NOW,
) -> TicketCreated:
    if customer is None:
        customer, _ = await add_customer(db)
    return await create_ticket(
        db,
        customer,
        category=category,
        subject="Help",
        body="Please help.",
        channel=TicketChannel.MOBILE,
        clock=ManualClock(now),
    )


async def _ticket(db: Database, ticket_id: int) -> TicketRow:
    async with db.read() as reader:
        return (await tickets_by_ids(reader, [ticket_id]))[ticket_id]


async def test_the_least_loaded_operator_with_the_skill_gets_the_ticket(db: Database) -> None:
    earlier, later = NOW - timedelta(hours=2), NOW - timedelta(hours=1)
    busy = await add_operator(db, BILLING, open_tickets=2, last_assigned_at=earlier)
    recent = await add_operator(db, BILLING, open_tickets=1, last_assigned_at=later)
    longest_idle = await add_operator(db, BILLING, open_tickets=1, last_assigned_at=earlier)
    # Less loaded, but without the skill, away or full: never chosen.
    await add_operator(db, [TicketCategory.MOVING])
    await add_operator(db, BILLING, presence=Presence.AWAY)
    await add_operator(db, BILLING, capacity=1, open_tickets=1)

    first = await _open(db)
    # Both hold one ticket: the one assigned longest ago.
    assert first.ticket.assignee_id == longest_idle.user_id
    assert first.assignment is not None
    assert first.assignment.operator.open_tickets == 2
    assert await operator(db, longest_idle.user_id) == (2, NOW, Presence.ONLINE)
    second = await _open(db)
    assert second.ticket.assignee_id == recent.user_id
    # Now all three hold two: `busy` was assigned longest ago.
    third = await _open(db)
    assert third.ticket.assignee_id == busy.user_id
    assert await assignments_of(db, first.ticket.id) == [(longest_idle.user_id, None, "auto")]
    kinds = [kind for kind, _ in await events_of(db, first.ticket.id)]
    assert kinds == ["ticket.created", "ticket.message_added", "ticket.assigned"]
    [assigned] = [
        data for kind, data in await events_of(db, first.ticket.id) if "operator_id" in data
    ]
    assert assigned == {
        "version": 1,
        "ticket_id": first.ticket.id,
        "customer_id": first.ticket.customer_id,
        "operator_id": longest_idle.user_id,
        "previous_operator_id": None,
        "reason": "auto",
        "assigned_by": None,
        "priority": "normal",
        "category": "billing",
    }


async def test_a_never_assigned_operator_goes_before_one_assigned_before(db: Database) -> None:
    await add_operator(db, BILLING, last_assigned_at=NOW - timedelta(days=1))
    fresh = await add_operator(db, BILLING)
    assert (await _open(db)).ticket.assignee_id == fresh.user_id


async def test_the_queue_drains_when_an_operator_comes_online(db: Database) -> None:
    suspended, _ = await add_customer(db, contract_status=ContractStatus.SUSPENDED)
    oldest = await _open(db, now=NOW)
    urgent = await _open(db, suspended, now=NOW + timedelta(minutes=1))
    newest = await _open(db, now=NOW + timedelta(minutes=2))
    moving = await _open(db, category=TicketCategory.MOVING, now=NOW - timedelta(hours=1))
    assert urgent.ticket.priority is TicketPriority.HIGH
    for created in (oldest, urgent, newest, moving):
        assert created.ticket.assignee_id is None

    agent = await add_operator(db, BILLING, capacity=2, presence=Presence.OFFLINE)
    later = NOW + timedelta(minutes=5)
    came = await set_presence(db, agent, Presence.ONLINE, clock=ManualClock(later))
    # The highest priority first, then the oldest; the moving ticket is not their skill.
    assert [ticket.id for ticket in came.assigned] == [urgent.ticket.id, oldest.ticket.id]
    assert (came.operator.presence, came.operator.open_tickets) == (Presence.ONLINE, 2)
    assert came.operator.presence_changed_at == later
    assert await assignments_of(db, urgent.ticket.id) == [(agent.user_id, None, "queue")]
    assert (await _ticket(db, newest.ticket.id)).assignee_id is None
    assert (await _ticket(db, moving.ticket.id)).assignee_id is None
    # Online again: nothing changes, and nothing more fits.
    again = await set_presence(
        db, agent, Presence.ONLINE, clock=ManualClock(later + timedelta(minutes=1))
    )
    assert again.assigned == []
    assert again.operator.presence_changed_at == later


async def test_an_admin_raising_capacity_drains_the_queue(db: Database) -> None:
    admin = await add_staff(db)
    agent = await add_operator(db, [], capacity=1)
    queued = await _open(db, category=TicketCategory.EQUIPMENT)
    assert queued.ticket.assignee_id is None
    saved = await save_operator(
        db,
        admin,
        agent.user_id,
        skills=[TicketCategory.EQUIPMENT],
        capacity=3,
        clock=ManualClock(NOW),
    )
    assert saved.skills == [TicketCategory.EQUIPMENT]
    assert [ticket.id for ticket in saved.assigned] == [queued.ticket.id]
    assert (saved.operator.capacity, saved.operator.open_tickets) == (3, 1)


async def test_operator_admin_refusals(db: Database) -> None:
    admin = await add_staff(db)
    customer, _ = await add_customer(db)
    agent = await add_operator(db, BILLING)
    for viewer, user_id, capacity, code in (
        (agent, agent.user_id, None, "FORBIDDEN"),
        (admin, agent.user_id, 0, "BAD_USER_INPUT"),
        (admin, agent.user_id, 1001, "BAD_USER_INPUT"),
        (admin, customer.user_id, None, "NOT_AN_OPERATOR"),
        (admin, 2**62, None, "NOT_FOUND"),
    ):
        with pytest.raises(DomainError) as refused:
            await save_operator(db, viewer, user_id, capacity=capacity)
        assert refused.value.code == code
    # A new operator: default capacity, offline, no skills until given.
    staff = await add_staff(db, Role.OPERATOR)
    saved = await save_operator(db, admin, staff.user_id, clock=ManualClock(NOW))
    assert (saved.operator.capacity, saved.operator.presence, saved.skills) == (
        5,
        Presence.OFFLINE,
        [],
    )


async def test_releasing_a_slot_gives_it_the_next_queued_ticket(db: Database) -> None:
    agent = await add_operator(db, BILLING, capacity=1)
    held = await _open(db)
    waiting = await _open(db, now=NOW + timedelta(minutes=1))
    assert held.ticket.assignee_id == agent.user_id
    assert waiting.ticket.assignee_id is None
    later = NOW + timedelta(hours=1)
    async with db.transaction() as session:
        # As resolving does: the ticket leaves the active statuses, its slot frees.
        await session.execute(
            update(Ticket).where(Ticket.id == held.ticket.id).values(status=TicketStatus.RESOLVED)
        )
        drained = await release(session, held.ticket, later)
    assert [ticket.id for ticket in drained] == [waiting.ticket.id]
    assert await operator(db, agent.user_id) == (1, later, Presence.ONLINE)
    assert (await _ticket(db, held.ticket.id)).assignee_id == agent.user_id  # who resolved it


async def test_staff_reassign_and_every_assignment_is_recorded(db: Database) -> None:
    first = await add_operator(db, BILLING, capacity=1)
    created = await _open(db)
    assert created.ticket.assignee_id == first.user_id
    waiting = await _open(db, now=NOW + timedelta(minutes=1))
    second = await add_operator(db, [], presence=Presence.AWAY)
    supervisor = await add_staff(db)
    later = NOW + timedelta(minutes=10)
    moved = await reassign_ticket(
        db,
        supervisor,
        ticket_id=created.ticket.id,
        operator_id=second.user_id,
        clock=ManualClock(later),
    )
    assert moved.ticket.assignee_id == second.user_id
    assert await assignments_of(db, created.ticket.id) == [
        (first.user_id, None, "auto"),
        (second.user_id, supervisor.user_id, "manual"),
    ]
    # The first operator's slot went to the queue's next ticket.
    assert (await _ticket(db, waiting.ticket.id)).assignee_id == first.user_id
    assert (await operator(db, first.user_id))[0] == 1
    assert (await operator(db, second.user_id))[0] == 1
    [moved_event] = [
        data
        for kind, data in await events_of(db, created.ticket.id)
        if kind == "ticket.assigned" and data["reason"] == "manual"
    ]
    assert (moved_event["previous_operator_id"], moved_event["assigned_by"]) == (
        first.user_id,
        supervisor.user_id,
    )


async def test_reassign_refusals_write_nothing(db: Database) -> None:
    full = await add_operator(db, BILLING, capacity=1)
    created = await _open(db)
    other = await _open(db, now=NOW + timedelta(minutes=1))
    assert created.ticket.assignee_id == full.user_id
    elsewhere = await add_operator(db, BILLING, capacity=1, presence=Presence.OFFLINE)
    await reassign_ticket(
        db, await add_staff(db), ticket_id=other.ticket.id, operator_id=elsewhere.user_id
    )
    customer, _ = await add_customer(db)
    supervisor = await add_staff(db, Role.OPERATOR)
    before = await counts(db)
    for viewer, ticket_id, operator_id, code in (
        (supervisor, created.ticket.id, elsewhere.user_id, "OPERATOR_AT_CAPACITY"),
        (supervisor, created.ticket.id, full.user_id, "BAD_USER_INPUT"),
        (supervisor, created.ticket.id, customer.user_id, "NOT_AN_OPERATOR"),
        (supervisor, 2**62, full.user_id, "NOT_FOUND"),
        (customer, created.ticket.id, elsewhere.user_id, "FORBIDDEN"),
    ):
        with pytest.raises(DomainError) as refused:
            await reassign_ticket(db, viewer, ticket_id=ticket_id, operator_id=operator_id)
        assert refused.value.code == code
    assert await counts(db) == before
    assert (await operator(db, full.user_id))[0] == 1


async def test_operators_whose_sessions_ended_unrevoked_go_offline(db: Database) -> None:
    """The worker's sweep: idle past the timeout, expired or revoked, no live session."""
    nobody, live, idle, expired, revoked = [await add_operator(db, BILLING) for _ in range(5)]
    hour = timedelta(hours=1)
    async with db.transaction() as session:
        for viewer, last_seen, expires, revoked_at in (
            (live, NOW - timedelta(minutes=20), NOW + hour, None),
            (idle, NOW - 2 * hour, NOW + hour, None),
            (expired, NOW - timedelta(minutes=1), NOW - timedelta(seconds=1), None),
            (revoked, NOW, NOW + hour, NOW),
        ):
            await session.execute(
                insert(Session).values(
                    id=uuid.uuid4(),
                    user_id=viewer.user_id,
                    device_info="",
                    created_at=NOW - 3 * hour,
                    last_seen_at=last_seen,
                    expires_at=expires,
                    revoked_at=revoked_at,
                )
            )
    gone = await offline_without_sessions(db, now=NOW, idle_timeout=timedelta(minutes=30))
    assert gone == 4
    presences = {
        viewer.user_id: (await operator(db, viewer.user_id))[2]
        for viewer in (nobody, live, idle, expired, revoked)
    }
    assert presences == {
        nobody.user_id: Presence.OFFLINE,
        live.user_id: Presence.ONLINE,
        idle.user_id: Presence.OFFLINE,
        expired.user_id: Presence.OFFLINE,
        revoked.user_id: Presence.OFFLINE,
    }


async def test_presence_is_for_operators(db: Database) -> None:
    customer, _ = await add_customer(db)
    staff = await add_staff(db, Role.OPERATOR)
    for viewer, code in ((customer, "FORBIDDEN"), (staff, "NOT_AN_OPERATOR")):
        with pytest.raises(DomainError) as refused:
            await set_presence(db, viewer, Presence.ONLINE)
        assert refused.value.code == code


@pytest.mark.postgres
async def test_concurrent_tickets_never_exceed_capacity(support_pg_url: str) -> None:
    """Sixty tickets at once over twenty connections, for ten operators of three slots each:
    thirty assigned, three each, thirty queued; no operator past capacity."""
    db = Database(support_pg_url, pool_size=20, pool_timeout=60)
    try:
        await quiet(db)
        agents = [
            await add_operator(db, [TicketCategory.SLOW_SPEED], capacity=3) for _ in range(10)
        ]
        customers = [(await add_customer(db))[0] for _ in range(60)]
        created = await asyncio.gather(
            *(_open(db, customer, TicketCategory.SLOW_SPEED) for customer in customers)
        )
        assigned = [each.ticket.assignee_id for each in created if each.ticket.assignee_id]
        assert len(assigned) == 30
        ids = {agent.user_id for agent in agents}
        assert {user_id: assigned.count(user_id) for user_id in ids} == dict.fromkeys(ids, 3)
        async with db.connect() as conn:
            stored = dict(
                (
                    await conn.execute(
                        select(SupportOperator.user_id, SupportOperator.open_tickets).where(
                            SupportOperator.user_id.in_(ids)
                        )
                    )
                ).all()
            )
            held = dict(
                (
                    await conn.execute(
                        select(Ticket.assignee_id, func.count())
                        .where(Ticket.assignee_id.in_(ids))
                        .group_by(Ticket.assignee_id)
                    )
                ).all()
            )
        assert stored == held == dict.fromkeys(ids, 3)

        # Freed slots under concurrency: ten operators each release one, ten tickets drain.
        async def release_one(user_id: int) -> list[TicketRow]:
            [mine] = [each.ticket for each in created if each.ticket.assignee_id == user_id][:1]
            async with db.transaction() as session:
                await session.execute(
                    update(Ticket).where(Ticket.id == mine.id).values(status=TicketStatus.RESOLVED)
                )
                return await release(session, mine, NOW + timedelta(hours=1))

        drained = await asyncio.gather(*(release_one(user_id) for user_id in ids))
        assert sorted(len(each) for each in drained) == [1] * 10
        assert len({ticket.id for each in drained for ticket in each}) == 10
        for user_id in ids:
            assert (await operator(db, user_id))[0] == 3
    finally:
        await db.dispose()
