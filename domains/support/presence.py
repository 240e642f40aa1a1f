"""An operator's presence: set by the operator, and offline when their last session ends.

Coming online drains the queue into their free capacity; going away or offline keeps the
tickets they hold (the SLA worker moves a breached one off an absent assignee).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, case, exists, update
from sqlalchemy.ext.asyncio import AsyncSession

from domains.clock import SYSTEM_CLOCK, Clock
from domains.database import Database
from domains.errors import Forbidden
from domains.identity.models import Session
from domains.identity.session import may_be_alive
from domains.identity.viewer import Viewer
from domains.reads import row_columns
from domains.support.assignment import drain_queue
from domains.support.errors import NotAnOperator
from domains.support.models import Presence, SupportOperator
from domains.support.operator import OperatorRow, operators_by_ids
from domains.support.ticket import TicketRow
from domains.writes import Write, writer

operators = SupportOperator.__table__
sessions = Session.__table__

_SET = Write(
    update(operators)
    .where(operators.c.user_id == bindparam("operator_id"))
    .values(
        presence=bindparam("presence"),
        # Since when they are what they are: unchanged by setting the same presence again.
        presence_changed_at=case(
            (
                operators.c.presence == bindparam("asked", type_=operators.c.presence.type),
                operators.c.presence_changed_at,
            ),
            else_=bindparam("now"),
        ),
    )
    .returning(*row_columns(OperatorRow, operators)),
    OperatorRow,
)
_OFFLINE = Write(
    update(operators)
    .where(
        operators.c.user_id == bindparam("operator_id"),
        operators.c.presence != Presence.OFFLINE,
    )
    .values(presence=Presence.OFFLINE, presence_changed_at=bindparam("now"))
)


@dataclass(frozen=True, slots=True)
class PresenceSet:
    operator: OperatorRow
    # Tickets the queue gave them on coming online, highest priority first.
    assigned: list[TicketRow]


async def set_presence(
    db: Database, viewer: Viewer, presence: Presence, *, clock: Clock = SYSTEM_CLOCK
) -> PresenceSet:
    if not viewer.is_staff:
        raise Forbidden("only support operators have a presence")
    now = clock.now()
    async with db.transaction() as session:
        found = await writer(session).fetch(
            _SET, operator_id=viewer.user_id, presence=presence, asked=presence, now=now
        )
        if not found:
            raise NotAnOperator("you are not a support operator; an admin can make you one")
        assigned: list[TicketRow] = []
        if presence is Presence.ONLINE:
            assigned = await drain_queue(session, viewer.user_id, now)
            if assigned:  # their load as the drain left it
                found = [
                    (await operators_by_ids(writer(session), [viewer.user_id]))[viewer.user_id]
                ]
    return PresenceSet(found[0], assigned)


async def sessions_ended(session: AsyncSession, user_id: int, now: datetime) -> None:
    """The user's last live session ended (identity's Sessions tells the domains, in the
    unit of work that ended it): an operator among them goes offline."""
    await writer(session).execute(_OFFLINE, operator_id=user_id, now=now)


async def offline_without_sessions(db: Database, *, now: datetime, idle_timeout: timedelta) -> int:
    """Sets offline the operators whose sessions all ended without a revocation (idle
    past the timeout, or expired), which no unit of work tells `sessions_ended`; the
    worker's sweep calls it. Returns how many."""
    live = exists().where(
        sessions.c.user_id == operators.c.user_id, may_be_alive(now, idle_timeout)
    )
    async with db.transaction() as session:
        gone = await session.execute(
            update(operators)
            .where(operators.c.presence != Presence.OFFLINE, ~live)
            .values(presence=Presence.OFFLINE, presence_changed_at=now)
        )
    return gone.rowcount  # type: ignore[attr-defined] - an UPDATE's CursorResult
