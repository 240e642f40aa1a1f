"""A ticket's thread and lifecycle (issue 14, points 1 and 4): customers' and operators'
messages, internal notes, staff status changes, the first response, the SLA pause, reopening
within the window and refusals that write nothing. On SQLite and PostgreSQL, on a clock the
tests move.
"""

import secrets
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select

from domains.clock import ManualClock
from domains.database import Database
from domains.errors import DomainError, Forbidden, NotFound
from domains.identity.models import Role
from domains.identity.viewer import Viewer
from domains.outbox import OutboxEvent
from domains.support.models import (
    AuthorKind,
    Presence,
    Ticket,
    TicketCategory,
    TicketChannel,
    TicketMessage,
    TicketPriority,
    TicketStatus,
)
from domains.support.thread import MAX_BODY
from domains.support.ticket import TicketRow, tickets_by_ids
from domains.support.ticket_message import add_internal_note, add_ticket_message
from domains.support.ticket_status import set_ticket_status
from tests.support_fixtures import add_operator, assignments_of
from tests.support_fixtures import operator as operator_load
from tests.test_payments import _insert_user, insert_customer

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
REOPEN = timedelta(days=14)
NEW, OPEN, PENDING, RESOLVED, CLOSED = (
    TicketStatus.NEW,
    TicketStatus.OPEN,
    TicketStatus.PENDING_CUSTOMER,
    TicketStatus.RESOLVED,
    TicketStatus.CLOSED,
)


async def make_customer(db: Database) -> Viewer:
    async with db.transaction() as session:
        user_id, customer_id = await insert_customer(session, "ticket", START)
    return Viewer(user_id, Role.CUSTOMER, customer_id)


async def make_staff(db: Database, role: Role = Role.OPERATOR) -> Viewer:
    async with db.transaction() as session:
        email = f"{secrets.token_hex(4)}@{role.value}.test"
        return Viewer(await _insert_user(session, email, role, START), role)


async def make_ticket(
    db: Database,
    customer: Viewer,
    *,
    priority: TicketPriority = TicketPriority.NORMAL,
    status: TicketStatus = NEW,
    assignee_id: int | None = None,
    at: datetime = START,
    first_response: timedelta = timedelta(hours=4),
    resolution: timedelta = timedelta(hours=24),
    **columns: object,
) -> TicketRow:
    """A ticket as createTicket leaves one: due times from `at`, no events."""
    async with db.transaction() as session:
        ticket_id = (
            await session.execute(
                insert(Ticket)
                .values(
                    customer_id=customer.customer_id,
                    category=TicketCategory.NO_CONNECTION,
                    subject="No internet since this morning",
                    priority=priority,
                    status=status,
                    channel=TicketChannel.WEB,
                    assignee_id=assignee_id,
                    created_by=customer.user_id,
                    created_at=at,
                    updated_at=at,
                    first_response_due_at=at + first_response,
                    resolution_due_at=at + resolution,
                    **columns,
                )
                .returning(Ticket.id)
            )
        ).scalar_one()
    return await ticket_of(db, ticket_id)


async def ticket_of(db: Database, ticket_id: int) -> TicketRow:
    async with db.read() as reader:
        return (await tickets_by_ids(reader, [ticket_id]))[ticket_id]


async def events_of(db: Database, ticket_id: int, type: str | None = None) -> list[dict]:
    """The ticket's events, in the order written (type and payload)."""
    async with db.connect() as conn:
        rows = await conn.execute(
            select(OutboxEvent.type, OutboxEvent.payload).order_by(OutboxEvent.occurred_at)
        )
    return [
        {"type": row.type, **row.payload}
        for row in rows
        if row.payload.get("ticket_id") == ticket_id and (type is None or row.type == type)
    ]


async def counts(db: Database) -> tuple[int, int]:
    """(messages, outbox events): what a refusal must leave as it was."""
    async with db.connect() as conn:
        messages = (await conn.execute(select(func.count()).select_from(TicketMessage))).scalar()
        outbox = (await conn.execute(select(func.count()).select_from(OutboxEvent))).scalar()
    return messages or 0, outbox or 0


async def message(
    db: Database, viewer: Viewer, ticket: TicketRow, clock: ManualClock, body: str = "Hello"
):
    return await add_ticket_message(
        db, viewer, ticket_id=ticket.id, body=body, reopen_within=REOPEN, clock=clock
    )


async def status(
    db: Database, viewer: Viewer, ticket: TicketRow, to: TicketStatus, clock: ManualClock
) -> TicketRow:
    return await set_ticket_status(db, viewer, ticket_id=ticket.id, status=to, clock=clock)


async def test_the_operators_first_reply_is_the_first_response_and_opens_the_ticket(db: Database):
    customer, operator = await make_customer(db), await make_staff(db)
    ticket = await make_ticket(db, customer)
    clock = ManualClock(START + timedelta(minutes=30))

    posted = await message(db, customer, ticket, clock, "Still down")
    assert (posted.message.author_kind, posted.message.internal) == (AuthorKind.CUSTOMER, False)
    assert posted.ticket.status is NEW
    assert posted.ticket.first_response_at is None

    clock.advance(timedelta(minutes=30))
    answered = await message(db, operator, ticket, clock, "We are looking into it")
    assert answered.message.author_kind is AuthorKind.OPERATOR
    assert answered.message.author_id == operator.user_id
    stored = await ticket_of(db, ticket.id)
    assert stored == answered.ticket
    assert (stored.status, stored.first_response_at, stored.updated_at) == (
        OPEN,
        clock.now(),
        clock.now(),
    )

    clock.advance(timedelta(minutes=5))
    await message(db, operator, ticket, clock, "Found it: a line fault")
    again = await ticket_of(db, ticket.id)
    assert (again.first_response_at, again.updated_at) == (START + timedelta(hours=1), clock.now())

    assert [
        (e["type"], e.get("author_kind"), e.get("new_status"))
        for e in await events_of(db, ticket.id)
    ] == [
        ("ticket.message_added", "customer", None),
        ("ticket.message_added", "operator", None),
        ("ticket.status_changed", None, "open"),
        ("ticket.message_added", "operator", None),
    ]
    [changed] = await events_of(db, ticket.id, "ticket.status_changed")
    assert changed == {
        "type": "ticket.status_changed",
        "version": 1,
        "ticket_id": ticket.id,
        "customer_id": customer.customer_id,
        "old_status": "new",
        "new_status": "open",
        "changed_by": operator.user_id,
        "priority": "normal",
        "category": "no_connection",
    }


async def test_waiting_on_the_customer_pauses_the_sla_and_their_reply_resumes_it(db: Database):
    customer, operator = await make_customer(db), await make_staff(db)
    ticket = await make_ticket(db, customer)
    clock = ManualClock(START + timedelta(hours=1))
    await message(db, operator, ticket, clock, "Please restart the router and tell us")

    clock.advance(timedelta(minutes=10))
    paused = await status(db, operator, ticket, PENDING, clock)
    assert (paused.status, paused.sla_paused_at) == (PENDING, clock.now())
    assert paused.first_response_due_at == START + timedelta(hours=4)  # not moved yet

    clock.advance(timedelta(hours=3))
    resumed = await message(db, customer, ticket, clock, "Restarted, still nothing")
    assert resumed.ticket == await ticket_of(db, ticket.id)
    assert resumed.ticket.status is OPEN
    assert resumed.ticket.sla_paused_at is None
    assert resumed.ticket.first_response_due_at == START + timedelta(hours=7)
    assert resumed.ticket.resolution_due_at == START + timedelta(hours=27)
    assert [
        (e["old_status"], e["new_status"], e["changed_by"])
        for e in await events_of(db, ticket.id, "ticket.status_changed")
    ] == [
        ("new", "open", operator.user_id),
        ("open", "pending_customer", operator.user_id),
        ("pending_customer", "open", customer.user_id),
    ]


async def test_resolving_while_paused_moves_the_due_times_too(db: Database):
    customer, operator = await make_customer(db), await make_staff(db)
    ticket = await make_ticket(db, customer, status=OPEN)
    clock = ManualClock(START)
    await status(db, operator, ticket, PENDING, clock)
    clock.advance(timedelta(hours=2))
    resolved = await status(db, operator, ticket, RESOLVED, clock)
    assert (resolved.status, resolved.resolved_at, resolved.sla_paused_at) == (
        RESOLVED,
        clock.now(),
        None,
    )
    assert resolved.resolution_due_at == START + timedelta(hours=26)


async def test_a_customer_message_reopens_a_resolved_ticket_within_the_window(db: Database):
    customer, operator = await make_customer(db), await make_staff(db)
    ticket = await make_ticket(db, customer, status=OPEN, first_response_at=START)
    clock = ManualClock(START)
    await status(db, operator, ticket, RESOLVED, clock)

    clock.advance(REOPEN)  # the window's last moment
    reopened = await message(db, customer, ticket, clock, "It broke again")
    assert (reopened.ticket.status, reopened.ticket.resolved_at) == (OPEN, None)
    assert reopened.ticket == await ticket_of(db, ticket.id)
    [*_, event] = await events_of(db, ticket.id, "ticket.status_changed")
    assert (event["old_status"], event["new_status"], event["changed_by"]) == (
        "resolved",
        "open",
        customer.user_id,
    )


async def test_after_the_window_or_when_closed_a_message_is_refused_and_nothing_written(
    db: Database,
):
    customer, operator = await make_customer(db), await make_staff(db)
    ticket = await make_ticket(db, customer, status=OPEN, first_response_at=START)
    clock = ManualClock(START)
    await status(db, operator, ticket, RESOLVED, clock)
    resolved = await ticket_of(db, ticket.id)
    before = await counts(db)

    clock.advance(REOPEN + timedelta(seconds=1))
    with pytest.raises(DomainError) as refused:
        await message(db, customer, ticket, clock, "Hello again")
    assert refused.value.code == "TICKET_CLOSED"
    assert await ticket_of(db, ticket.id) == resolved
    assert await counts(db) == before

    # Staff may still answer a resolved ticket; it stays resolved.
    answered = await message(db, operator, ticket, clock, "Closing this one, see the new ticket")
    assert answered.ticket.status is RESOLVED

    await status(db, operator, ticket, CLOSED, clock)
    closed = await ticket_of(db, ticket.id)
    assert (closed.status, closed.closed_at) == (CLOSED, clock.now())
    before = await counts(db)
    for who in (customer, operator):
        with pytest.raises(DomainError) as refused:
            await message(db, who, ticket, clock)
        assert refused.value.code == "TICKET_CLOSED"
    assert await counts(db) == before
    assert await ticket_of(db, ticket.id) == closed


@pytest.mark.parametrize(
    ("body", "problem"),
    [("", "needs a body"), ("  \n\t ", "needs a body"), ("x" * (MAX_BODY + 1), "at most 10000")],
)
async def test_bad_bodies_are_refused_and_nothing_written(db: Database, body: str, problem: str):
    customer, operator = await make_customer(db), await make_staff(db)
    ticket = await make_ticket(db, customer)
    clock = ManualClock(START)
    before = await counts(db)
    for attempt in (
        message(db, customer, ticket, clock, body),
        message(db, operator, ticket, clock, body),
        add_internal_note(db, operator, ticket_id=ticket.id, body=body, clock=clock),
    ):
        with pytest.raises(DomainError, match=problem) as refused:
            await attempt
        assert refused.value.code == "BAD_USER_INPUT"
    assert await counts(db) == before
    assert await ticket_of(db, ticket.id) == ticket


async def test_a_body_of_the_limit_is_kept_trimmed(db: Database):
    customer = await make_customer(db)
    ticket = await make_ticket(db, customer)
    posted = await message(db, customer, ticket, ManualClock(START), f"  {'x' * MAX_BODY}\n")
    assert posted.message.body == "x" * MAX_BODY


async def test_another_customers_ticket_and_a_missing_one_read_as_not_found(db: Database):
    alice, bob, operator = await make_customer(db), await make_customer(db), await make_staff(db)
    ticket = await make_ticket(db, alice)
    clock = ManualClock(START)
    before = await counts(db)
    with pytest.raises(NotFound):
        await message(db, bob, ticket, clock)
    for attempt in (
        add_ticket_message(db, alice, ticket_id=10**9, body="x", reopen_within=REOPEN, clock=clock),
        add_internal_note(db, operator, ticket_id=10**9, body="x", clock=clock),
        set_ticket_status(db, operator, ticket_id=10**9, status=OPEN, clock=clock),
    ):
        with pytest.raises(NotFound):
            await attempt
    assert await counts(db) == before


async def test_internal_notes_are_staffs_and_change_nothing_a_customer_sees(db: Database):
    customer, operator = await make_customer(db), await make_staff(db)
    ticket = await make_ticket(db, customer)
    clock = ManualClock(START + timedelta(hours=1))
    with pytest.raises(Forbidden):
        await add_internal_note(db, customer, ticket_id=ticket.id, body="note", clock=clock)

    noted = await add_internal_note(
        db, operator, ticket_id=ticket.id, body="Line test booked", clock=clock
    )
    assert (noted.message.internal, noted.message.author_kind) == (True, AuthorKind.OPERATOR)
    # Not a first response, and not even a newer updated_at.
    assert await ticket_of(db, ticket.id) == ticket
    [event] = await events_of(db, ticket.id)
    assert (event["type"], event["internal"]) == ("ticket.message_added", True)

    # A closed ticket still takes notes (what happened after).
    await status(db, operator, ticket, CLOSED, clock)
    await add_internal_note(
        db, operator, ticket_id=ticket.id, body="Customer called back", clock=clock
    )


async def test_staff_move_tickets_along_the_allowed_transitions_only(db: Database):
    customer, operator, admin = (
        await make_customer(db),
        await make_staff(db),
        await make_staff(db, Role.ADMIN),
    )
    clock = ManualClock(START)
    ticket = await make_ticket(db, customer)
    with pytest.raises(Forbidden):
        await status(db, customer, ticket, OPEN, clock)

    refused = [
        (NEW, NEW, False),
        (OPEN, NEW, True),
        (RESOLVED, PENDING, True),
        (CLOSED, OPEN, True),
        (CLOSED, RESOLVED, True),
    ]
    for start, to, invalid in refused:
        row = await make_ticket(db, customer, status=start)
        before = await counts(db)
        if invalid:
            with pytest.raises(DomainError) as error:
                await status(db, admin, row, to, clock)
            assert error.value.code == "INVALID_TRANSITION", (start, to)
        else:  # the status it has: nothing to do
            assert await status(db, admin, row, to, clock) == row
        assert await counts(db) == before
        assert await ticket_of(db, row.id) == row

    clock.advance(timedelta(hours=1))
    resolved = await status(db, operator, ticket, RESOLVED, clock)
    assert (resolved.resolved_at, resolved.closed_at) == (clock.now(), None)
    clock.advance(timedelta(hours=1))
    reopened = await status(db, operator, ticket, OPEN, clock)  # staff reopen at any time
    assert (reopened.status, reopened.resolved_at) == (OPEN, None)
    closed = await status(db, admin, ticket, CLOSED, clock)
    assert (closed.status, closed.closed_at) == (CLOSED, clock.now())
    assert closed == await ticket_of(db, ticket.id)
    assert [(e["new_status"], e["changed_by"]) for e in await events_of(db, ticket.id)] == [
        ("resolved", operator.user_id),
        ("open", operator.user_id),
        ("closed", admin.user_id),
    ]


# A ticket's slot of its assignee's capacity (domains/support/assignment.py).


async def test_resolving_frees_the_slot_for_the_queue_and_a_reopen_takes_one_again(db: Database):
    customer = await make_customer(db)
    operator = await add_operator(db, [TicketCategory.NO_CONNECTION], capacity=1, open_tickets=1)
    ticket = await make_ticket(db, customer, status=OPEN, assignee_id=operator.user_id)
    queued = await make_ticket(db, customer, at=START + timedelta(minutes=1))
    clock = ManualClock(START + timedelta(hours=1))

    await status(db, operator, ticket, RESOLVED, clock)
    # The freed slot went to the queue's ticket at once.
    assert (await ticket_of(db, queued.id)).assignee_id == operator.user_id
    assert (await operator_load(db, operator.user_id))[0] == 1
    assert await assignments_of(db, queued.id) == [(operator.user_id, None, "queue")]

    # Reopened while its assignee is full: it goes back to the queue, nobody assigned.
    clock.advance(timedelta(days=1))
    reopened = await message(db, customer, ticket, clock, "It is down again")
    assert (reopened.ticket.status, reopened.ticket.assignee_id) == (OPEN, None)
    assert (await ticket_of(db, ticket.id)).assignee_id is None

    # Once the other ticket is done, the reopened one comes back to the operator.
    await status(db, operator, queued, CLOSED, clock)
    assert (await ticket_of(db, ticket.id)).assignee_id == operator.user_id
    assert (await operator_load(db, operator.user_id))[0] == 1


async def test_a_reopened_ticket_stays_with_its_assignee_when_they_have_room(db: Database):
    customer = await make_customer(db)
    operator = await add_operator(db, [TicketCategory.NO_CONNECTION], capacity=2, open_tickets=1)
    ticket = await make_ticket(db, customer, status=OPEN, assignee_id=operator.user_id)
    clock = ManualClock(START)
    await status(db, operator, ticket, RESOLVED, clock)
    assert (await operator_load(db, operator.user_id))[0] == 0
    reopened = await status(db, operator, ticket, OPEN, clock)
    assert reopened.assignee_id == operator.user_id
    assert (await operator_load(db, operator.user_id))[0] == 1
    assert await assignments_of(db, ticket.id) == []  # the same assignee: no new assignment


async def test_a_reopened_ticket_of_an_absent_assignee_goes_to_one_who_is_there(db: Database):
    customer = await make_customer(db)
    away = await add_operator(
        db, [TicketCategory.NO_CONNECTION], presence=Presence.AWAY, open_tickets=1
    )
    there = await add_operator(db, [TicketCategory.NO_CONNECTION])
    ticket = await make_ticket(db, customer, status=PENDING, assignee_id=away.user_id)
    clock = ManualClock(START)
    await status(db, away, ticket, RESOLVED, clock)
    assert (await operator_load(db, away.user_id))[0] == 0
    reopened = await message(db, customer, ticket, clock, "Not fixed")
    assert reopened.ticket.assignee_id == there.user_id
    assert (await operator_load(db, there.user_id))[0] == 1
    [assigned] = await events_of(db, ticket.id, "ticket.assigned")
    assert (assigned["operator_id"], assigned["previous_operator_id"], assigned["reason"]) == (
        there.user_id,
        away.user_id,
        "queue",
    )
