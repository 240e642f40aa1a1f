"""What the support tests share: customers with contracts, operators with skills, a quiet
database (every operator offline, nothing left in the queue) for each test."""

import secrets
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import func, insert, select, update

from domains.clock import utcnow
from domains.customers.models import Contract, ContractStatus, Customer, Segment, Tariff
from domains.database import Database
from domains.identity.models import Role, User
from domains.identity.viewer import Viewer
from domains.outbox import OutboxEvent
from domains.support.models import (
    ACTIVE_STATUSES,
    Presence,
    SupportOperator,
    SupportOperatorSkill,
    Ticket,
    TicketAssignment,
    TicketCategory,
    TicketMessage,
    TicketStatus,
)


async def add_user(db: Database, role: Role) -> int:
    async with db.transaction() as session:
        return (
            await session.execute(
                insert(User)
                .values(
                    email=f"{role.value}-{secrets.token_hex(6)}@support.test",
                    role=role,
                    is_active=True,
                    password_hash="x",
                    created_at=utcnow(),
                )
                .returning(User.id)
            )
        ).scalar_one()


async def add_staff(db: Database, role: Role = Role.ADMIN) -> Viewer:
    return Viewer(await add_user(db, role), role)


async def add_customer(
    db: Database,
    *,
    segment: Segment = Segment.HOME,
    contract_status: ContractStatus = ContractStatus.ACTIVE,
) -> tuple[Viewer, int]:
    """A customer with one contract on a tariff of `segment`: (viewer, contract id)."""
    user_id = await add_user(db, Role.CUSTOMER)
    tag = secrets.token_hex(6)
    async with db.transaction() as session:
        customer_id = (
            await session.execute(
                insert(Customer)
                .values(
                    user_id=user_id,
                    contract_num=f"S-{tag}",
                    full_name="Support Test",
                    balance=Decimal(0),
                    currency="RUB",
                    created_at=utcnow(),
                )
                .returning(Customer.id)
            )
        ).scalar_one()
        tariff_id = (
            await session.execute(
                insert(Tariff)
                .values(
                    code=f"t-{tag}",
                    name="Test",
                    segment=segment,
                    monthly_price=Decimal("500.00"),
                    download_mbps=100,
                    upload_mbps=100,
                )
                .returning(Tariff.id)
            )
        ).scalar_one()
        contract_id = (
            await session.execute(
                insert(Contract)
                .values(
                    customer_id=customer_id,
                    tariff_id=tariff_id,
                    address="1 Test Street",
                    status=contract_status,
                    start_date=date(2026, 1, 1),
                )
                .returning(Contract.id)
            )
        ).scalar_one()
    return Viewer(user_id, Role.CUSTOMER, customer_id), contract_id


async def add_operator(
    db: Database,
    skills: Sequence[TicketCategory],
    *,
    capacity: int = 5,
    presence: Presence = Presence.ONLINE,
    open_tickets: int = 0,
    last_assigned_at: datetime | None = None,
) -> Viewer:
    user_id = await add_user(db, Role.OPERATOR)
    async with db.transaction() as session:
        await session.execute(
            insert(SupportOperator).values(
                user_id=user_id,
                presence=presence,
                capacity=capacity,
                open_tickets=open_tickets,
                last_assigned_at=last_assigned_at,
                presence_changed_at=utcnow(),
            )
        )
        if skills:
            await session.execute(
                insert(SupportOperatorSkill),
                [{"user_id": user_id, "category": category} for category in skills],
            )
    return Viewer(user_id, Role.OPERATOR)


async def quiet(db: Database) -> None:
    """Every operator offline and nothing queued: what earlier tests on a shared database
    left does not take part."""
    async with db.transaction() as session:
        await session.execute(update(SupportOperator).values(presence=Presence.OFFLINE))
        await session.execute(
            update(Ticket)
            .where(Ticket.status.in_(ACTIVE_STATUSES))
            .values(status=TicketStatus.CLOSED)
        )


async def counts(db: Database) -> dict[str, int]:
    """Rows of what creating and assigning tickets writes."""
    found = {}
    async with db.connect() as conn:
        for table in (Ticket, TicketMessage, TicketAssignment, OutboxEvent):
            found[table.__tablename__] = (
                await conn.execute(select(func.count()).select_from(table))
            ).scalar_one()
    return found


async def operator(db: Database, user_id: int) -> tuple[int, datetime | None, Presence]:
    """(open tickets, last assigned at, presence) of an operator, as stored."""
    async with db.connect() as conn:
        row = (
            await conn.execute(
                select(
                    SupportOperator.open_tickets,
                    SupportOperator.last_assigned_at,
                    SupportOperator.presence,
                ).where(SupportOperator.user_id == user_id)
            )
        ).one()
    return row[0], row[1], row[2]


async def assignments_of(db: Database, ticket_id: int) -> list[tuple[int, int | None, str]]:
    """(operator, assigned by, reason) of each assignment of the ticket, in order."""
    async with db.connect() as conn:
        rows = await conn.execute(
            select(
                TicketAssignment.operator_id,
                TicketAssignment.assigned_by,
                TicketAssignment.reason,
            )
            .where(TicketAssignment.ticket_id == ticket_id)
            .order_by(TicketAssignment.id)
        )
        return [(row[0], row[1], row[2].value) for row in rows]


async def events_of(db: Database, ticket_id: int) -> list[tuple[str, dict]]:
    """(type, payload) of the ticket's events, in order."""
    async with db.connect() as conn:
        rows = await conn.execute(
            select(OutboxEvent.type, OutboxEvent.payload)
            .where(OutboxEvent.type.like("ticket.%"))
            .order_by(OutboxEvent.occurred_at, OutboxEvent.id)
        )
        return [(row[0], row[1]) for row in rows if row[1]["ticket_id"] == ticket_id]
