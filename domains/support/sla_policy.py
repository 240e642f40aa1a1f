"""The SLA policies admins read and edit: per priority, minutes to the first answer and to
resolution. A ticket's due times are set from its priority's policy when it is created
(domains/support/sla.py), so an edit applies to tickets created after it."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, update

from domains.clock import SYSTEM_CLOCK, Clock
from domains.database import Database
from domains.errors import Forbidden, InvalidInput, NotFound
from domains.identity.models import Role
from domains.identity.viewer import Viewer
from domains.reads import Read, Reader, row_columns, select_rows
from domains.support.models import TicketPriority, TicketSlaPolicy
from domains.support.priority import RANK
from domains.writes import Write, writer

policies = TicketSlaPolicy.__table__

# A target is at least a minute and at most a year.
MAX_MINUTES = 366 * 24 * 60


@dataclass(frozen=True, slots=True)
class SlaPolicyRow:
    priority: TicketPriority
    first_response_minutes: int
    resolution_minutes: int
    updated_at: datetime
    updated_by: int | None


_ALL = Read(SlaPolicyRow, select_rows(SlaPolicyRow, policies))
_UPDATE = Write(
    update(policies)
    .where(policies.c.priority == bindparam("of_priority", type_=policies.c.priority.type))
    .values(
        first_response_minutes=bindparam("first_response_minutes"),
        resolution_minutes=bindparam("resolution_minutes"),
        updated_at=bindparam("updated_at"),
        updated_by=bindparam("updated_by"),
    )
    .returning(*row_columns(SlaPolicyRow, policies)),
    SlaPolicyRow,
)


async def sla_policies(reader: Reader) -> list[SlaPolicyRow]:
    """Every priority's policy, the most urgent first."""
    rows = await reader.fetch(_ALL)
    return sorted(rows, key=lambda row: RANK[row.priority], reverse=True)


def _check_minutes(name: str, minutes: int) -> None:
    if not 1 <= minutes <= MAX_MINUTES:
        raise InvalidInput(f"{name} is 1 to {MAX_MINUTES} minutes, not {minutes}")


async def update_sla_policy(
    db: Database,
    viewer: Viewer,
    *,
    priority: TicketPriority,
    first_response_minutes: int,
    resolution_minutes: int,
    clock: Clock = SYSTEM_CLOCK,
) -> SlaPolicyRow:
    """Sets a priority's targets (admins); the first answer is due no later than resolution."""
    if viewer.role is not Role.ADMIN:
        raise Forbidden("only an admin edits SLA policies")
    _check_minutes("firstResponseMinutes", first_response_minutes)
    _check_minutes("resolutionMinutes", resolution_minutes)
    if first_response_minutes > resolution_minutes:
        raise InvalidInput("the first response is due no later than the resolution")
    async with db.transaction() as session:
        updated = await writer(session).fetch(
            _UPDATE,
            of_priority=priority,
            first_response_minutes=first_response_minutes,
            resolution_minutes=resolution_minutes,
            updated_at=clock.now(),
            updated_by=viewer.user_id,
        )
        if not updated:
            raise NotFound("SLA policy")
        return updated[0]
