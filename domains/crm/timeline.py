"""A customer's timeline: writing an entry for an event, and reading pages newest first."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from domains.crm.models import TimelineEntry, TimelineKind
from domains.events.cloudevent import CloudEvent
from domains.keyset import Ordering, Page, PageRead, Window
from domains.reads import Reader, any_of, select_rows
from domains.writes import Write, writer

timeline = TimelineEntry.__table__


@dataclass(frozen=True, slots=True)
class TimelineEntryRow:
    id: int
    customer_id: int
    occurred_at: datetime
    kind: TimelineKind
    summary: str
    reference: str
    event_id: uuid.UUID
    actor_id: int | None


TIMELINE_ORDER = Ordering((timeline.c.occurred_at, timeline.c.id), descending=True)

TIMELINE_PAGES = PageRead(
    TimelineEntryRow,
    select_rows(TimelineEntryRow, timeline).where(any_of(timeline.c.customer_id, "customer_ids")),
    TIMELINE_ORDER,
    partition=timeline.c.customer_id,
)

_COLUMNS = ("customer_id", "occurred_at", "kind", "summary", "reference", "event_id", "actor_id")
# The consumer's claim already runs this once per event; the unique event id keeps a second
# writer of the same event (a replay under another consumer name) from doubling it.
_ADD = Write(
    postgresql.insert(timeline)
    .values({name: bindparam(name) for name in _COLUMNS})
    .on_conflict_do_nothing(index_elements=[timeline.c.event_id])
)


async def add_entry(
    session: AsyncSession,
    event: CloudEvent,
    *,
    kind: TimelineKind,
    summary: str,
    reference: str,
    actor_id: int | None = None,
) -> None:
    """The event's entry on its customer's timeline, at the event's own time."""
    await writer(session).execute(
        _ADD,
        customer_id=event.data["customer_id"],
        occurred_at=event.time,
        kind=kind,
        summary=summary,
        reference=reference,
        event_id=event.id,
        actor_id=actor_id,
    )


async def timeline_pages_by_customer_ids(
    reader: Reader, customer_ids: Sequence[int], window: Window
) -> dict[int, Page[TimelineEntryRow]]:
    return await TIMELINE_PAGES.pages(reader, window, customer_ids, customer_ids=customer_ids)
