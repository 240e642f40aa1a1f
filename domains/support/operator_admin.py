"""Admins make a staff user a support operator, and set their skills and capacity."""

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Integer, bindparam, delete, func, select
from sqlalchemy.dialects.postgresql import insert

from domains.clock import SYSTEM_CLOCK, Clock
from domains.database import Database
from domains.errors import Forbidden, InvalidInput, NotFound
from domains.identity.models import Role, User
from domains.identity.viewer import Viewer
from domains.reads import Read, row_columns
from domains.support.assignment import drain_queue
from domains.support.errors import NotAnOperator
from domains.support.models import Presence, SupportOperator, SupportOperatorSkill, TicketCategory
from domains.support.operator import OperatorRow, operators_by_ids, skills_by_user_ids
from domains.support.ticket import TicketRow
from domains.writes import RowsInsert, Write, writer

operators = SupportOperator.__table__
skills = SupportOperatorSkill.__table__
users = User.__table__

MAX_CAPACITY = 1000
DEFAULT_CAPACITY = 5


@dataclass(frozen=True, slots=True)
class _Staff:
    role: Role


@dataclass(frozen=True, slots=True)
class OperatorSaved:
    operator: OperatorRow
    skills: list[TicketCategory]
    # Queued tickets their new room or skills took at once.
    assigned: list[TicketRow]


_ROLE = Read(_Staff, select(users.c.role).where(users.c.id == bindparam("user_id")))
# New operators start offline; an existing one keeps everything but what is given.
_UPSERT = Write(
    insert(operators)
    .values(
        user_id=bindparam("user_id"),
        presence=Presence.OFFLINE,
        capacity=bindparam("capacity"),
        open_tickets=0,
        presence_changed_at=bindparam("now"),
    )
    .on_conflict_do_update(
        index_elements=[operators.c.user_id],
        set_={
            "capacity": func.coalesce(
                bindparam("new_capacity", type_=Integer), operators.c.capacity
            )
        },
    )
    .returning(*row_columns(OperatorRow, operators)),
    OperatorRow,
)
_FORGET_SKILLS = Write(delete(skills).where(skills.c.user_id == bindparam("user_id")))
_ADD_SKILLS = RowsInsert(skills, ("category",), shared=("user_id",))


async def save_operator(
    db: Database,
    viewer: Viewer,
    user_id: int,
    *,
    skills: Sequence[TicketCategory] | None = None,
    capacity: int | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> OperatorSaved:
    """Creates or updates the operator; `skills` (when given) replaces their categories."""
    if viewer.role is not Role.ADMIN:
        raise Forbidden("only admins manage support operators")
    if capacity is not None and not 1 <= capacity <= MAX_CAPACITY:
        raise InvalidInput(f"capacity must be between 1 and {MAX_CAPACITY}")
    now = clock.now()
    async with db.transaction() as session:
        tx = writer(session)
        found = await tx.fetch(_ROLE, user_id=user_id)
        if not found:
            raise NotFound("user")
        if found[0].role is Role.CUSTOMER:
            raise NotAnOperator("only staff users take tickets")
        # The upsert takes the operator's row lock (domains/support/assignment.py).
        [operator] = await tx.fetch(
            _UPSERT,
            user_id=user_id,
            capacity=DEFAULT_CAPACITY if capacity is None else capacity,
            new_capacity=capacity,
            now=now,
        )
        if skills is not None:
            await tx.execute(_FORGET_SKILLS, user_id=user_id)
            await tx.insert(
                _ADD_SKILLS,
                [{"category": category} for category in sorted(set(skills))],
                user_id=user_id,
            )
        assigned = await drain_queue(session, user_id, now)
        if assigned:
            operator = (await operators_by_ids(tx, [user_id]))[user_id]
        held = (await skills_by_user_ids(tx, [user_id]))[user_id]
    return OperatorSaved(operator, held, assigned)
