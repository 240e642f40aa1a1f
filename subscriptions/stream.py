"""One subscriber's stream of events: what it missed (from the outbox), then live ones."""

import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from datetime import datetime

from sqlalchemy import select, tuple_

from domains.database import Database
from domains.errors import InvalidInput, NotFound
from domains.events.catalog import EventCatalog
from domains.events.cloudevent import CloudEvent
from domains.outbox import OutboxEvent
from subscriptions.hub import Hub

outbox = OutboxEvent.__table__


class _Seen:
    """Ids already yielded, the newest `limit` of them: a relay's redelivery, or a live copy
    of an event the catch-up replayed, is skipped."""

    def __init__(self, limit: int) -> None:
        self._ids: OrderedDict[uuid.UUID, None] = OrderedDict()
        self._limit = limit

    def add(self, event_id: uuid.UUID) -> bool:
        """False when the id was already there."""
        if event_id in self._ids:
            return False
        self._ids[event_id] = None
        if len(self._ids) > self._limit:
            self._ids.popitem(last=False)
        return True


async def events(
    hub: Hub,
    db: Database,
    *,
    subject: str | None,
    types: frozenset[str],
    owner: int,
    after: str | None,
    catch_up_limit: int,
    catalog: EventCatalog,
) -> AsyncIterator[CloudEvent]:
    """The events of `types` about `subject` (about any subject when None: an audience's):
    those after event `after` first, then live ones.

    The hub registration comes before the catch-up read, so an event committed in between is
    in one or both of them, never in neither; the duplicates are skipped.
    """
    subscriber = hub.subscribe(types, subject=subject, owner=owner)
    try:
        seen = _Seen(catch_up_limit + hub.queue_size)
        if after is not None:
            for event in await missed(
                db, subject, types, after, limit=catch_up_limit, catalog=catalog
            ):
                seen.add(event.id)
                yield event
        while True:
            event = await subscriber.next()
            if seen.add(event.id):
                yield event
    finally:
        hub.unsubscribe(subscriber)


async def missed(
    db: Database,
    subject: str | None,
    types: frozenset[str],
    after: str,
    *,
    limit: int,
    catalog: EventCatalog,
) -> list[CloudEvent]:
    """The stream's events after event `after`, oldest first, from the outbox, as the relay
    publishes them.

    `after` must be an event of the stream: one about `subject`, or for an audience one of
    its types; any other id reads as NOT_FOUND, so a client cannot probe others' events.
    More than `limit` missed events is refused, since replaying only some of them would leave
    a silent gap.
    """
    try:
        after_id = uuid.UUID(after)
    except ValueError:
        raise InvalidInput("`after` must be an event id from an earlier message") from None
    of_types = outbox.c.type.in_(sorted(types))
    about = [] if subject is None else [outbox.c.subject == subject]
    async with db.connect() as conn:
        occurred_at: datetime | None = (
            await conn.execute(
                select(outbox.c.occurred_at).where(outbox.c.id == after_id, *(about or [of_types]))
            )
        ).scalar_one_or_none()
        if occurred_at is None:
            raise NotFound("event")
        rows = (
            await conn.execute(
                select(outbox)
                .where(
                    *about,
                    of_types,
                    tuple_(outbox.c.occurred_at, outbox.c.id) > tuple_(occurred_at, after_id),
                )
                .order_by(outbox.c.occurred_at, outbox.c.id)
                .limit(limit + 1)
            )
        ).all()
    if len(rows) > limit:
        raise InvalidInput(
            f"more than {limit} events were missed: reload, then subscribe without `after`"
        )
    return [CloudEvent.from_outbox(row, catalog) for row in rows]
