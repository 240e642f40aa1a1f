"""The demo's support desk: two operators with skills and presence, and tickets in each
state, made through the support actions on a clock set to each step's time, so priorities,
assignments, SLA due times, counts and events are what the real desk would have.

- operator@example.com (connection, speed, equipment, other; capacity 5): online.
- operator2@example.com (billing, moving, other; capacity 3): away since an hour ago, so the
  moving ticket opened after that waits in the queue.
  Presence follows sessions: the worker's sweep takes both offline until they sign in and
  set it again (`setMyPresence`), which hands the queue to whoever comes online.
- bob: a speed ticket resolved two days ago, an equipment ticket closed last month.
- alice: a billing ticket waiting on her (with an internal note she never sees) and an
  unanswered connection ticket from this morning (a repeat: urgent).
- the third demo customer (bob, when the demo has only two): a moving ticket in the queue.
"""

from datetime import datetime, timedelta

from sqlalchemy import select

from domains.clock import ManualClock
from domains.customers.models import Customer
from domains.database import Database
from domains.identity.models import Role, User
from domains.identity.viewer import Viewer
from domains.support.models import Presence, TicketCategory, TicketChannel, TicketStatus
from domains.support.operator_admin import save_operator
from domains.support.presence import set_presence
from domains.support.ticket_create import create_ticket
from domains.support.ticket_message import add_internal_note, add_ticket_message
from domains.support.ticket_status import set_ticket_status

C = TicketCategory
OPERATORS: dict[str, tuple[frozenset[TicketCategory], int]] = {
    "operator@example.com": (
        frozenset({C.NO_CONNECTION, C.SLOW_SPEED, C.EQUIPMENT, C.OTHER}),
        5,
    ),
    "operator2@example.com": (frozenset({C.BILLING, C.MOVING, C.OTHER}), 3),
}
# The reopen window does not matter here: no demo message reopens a ticket.
_REOPEN = timedelta(days=14)


async def load_support_demo(
    db: Database, *, admin: Viewer, third_customer_id: int, now: datetime
) -> None:
    users = await _users(db, [*OPERATORS, "alice@example.com", "bob@example.com"])
    first, second = (Viewer(users[email][0], Role.OPERATOR) for email in OPERATORS)
    alice = Viewer(users["alice@example.com"][0], Role.CUSTOMER, users["alice@example.com"][1])
    bob = Viewer(users["bob@example.com"][0], Role.CUSTOMER, users["bob@example.com"][1])
    start = now - timedelta(days=31)
    for email, (skills, capacity) in OPERATORS.items():
        await save_operator(
            db,
            admin,
            users[email][0],
            skills=sorted(skills),
            capacity=capacity,
            clock=ManualClock(start),
        )
    for operator in (first, second):
        await set_presence(db, operator, Presence.ONLINE, clock=ManualClock(start))

    async def ticket(
        viewer: Viewer,
        at: datetime,
        category: TicketCategory,
        subject: str,
        body: str,
        *,
        channel: TicketChannel = TicketChannel.WEB,
        customer_id: int | None = None,
    ) -> int:
        created = await create_ticket(
            db,
            viewer,
            category=category,
            subject=subject,
            body=body,
            channel=channel,
            customer_id=customer_id,
            clock=ManualClock(at),
        )
        return created.ticket.id

    async def reply(viewer: Viewer, ticket_id: int, at: datetime, body: str) -> None:
        await add_ticket_message(
            db, viewer, ticket_id=ticket_id, body=body, reopen_within=_REOPEN, clock=ManualClock(at)
        )

    async def status(viewer: Viewer, ticket_id: int, at: datetime, to: TicketStatus) -> None:
        await set_ticket_status(db, viewer, ticket_id=ticket_id, status=to, clock=ManualClock(at))

    at = now - timedelta(days=20)
    router = await ticket(
        bob, at, C.EQUIPMENT, "Router keeps rebooting", "The router restarts every hour or so."
    )
    await reply(first, router, at + timedelta(hours=1), "A replacement router is on its way.")
    await status(first, router, at + timedelta(days=1), TicketStatus.RESOLVED)
    await status(first, router, at + timedelta(days=8), TicketStatus.CLOSED)

    at = now - timedelta(days=3)
    speed = await ticket(
        bob, at, C.SLOW_SPEED, "Speed drops every evening", "From 8 pm the speed is a third."
    )
    await reply(first, speed, at + timedelta(hours=2), "We moved your line to a free port.")
    await status(first, speed, at + timedelta(days=1), TicketStatus.RESOLVED)

    at = now - timedelta(days=1)
    billing = await ticket(
        alice,
        at,
        C.BILLING,
        "Why is my November invoice overdue?",
        "I thought the balance paid it.",
        channel=TicketChannel.MOBILE,
    )
    await add_internal_note(
        db,
        second,
        ticket_id=billing,
        body="Her balance did not cover November when the run paid; nothing is wrong.",
        clock=ManualClock(at + timedelta(minutes=30)),
    )
    await reply(
        second,
        billing,
        at + timedelta(minutes=40),
        "The balance was short when November was billed; pay it from the balance or by card.",
    )
    await status(second, billing, at + timedelta(minutes=41), TicketStatus.PENDING_CUSTOMER)
    await set_presence(db, second, Presence.AWAY, clock=ManualClock(now - timedelta(hours=1)))

    await ticket(
        alice,
        now - timedelta(minutes=45),
        C.NO_CONNECTION,
        "No internet since this morning",
        "The router's light is red.",
    )
    await ticket(
        admin,
        now - timedelta(minutes=20),
        C.MOVING,
        "Moving to a new flat next month",
        "Called the office: wants the service moved on the 15th.",
        channel=TicketChannel.STAFF,
        customer_id=third_customer_id,
    )


async def _users(db: Database, emails: list[str]) -> dict[str, tuple[int, int | None]]:
    """Each email's user id and customer id (None for staff)."""
    stmt = (
        select(User.email, User.id, Customer.id)
        .outerjoin(Customer, Customer.user_id == User.id)
        .where(User.email.in_(emails))
    )
    async with db.connect() as conn:
        return {
            email: (user_id, customer_id)
            for email, user_id, customer_id in await conn.execute(stmt)
        }
