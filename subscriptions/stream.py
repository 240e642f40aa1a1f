"""One subscriber's stream of events: what it missed (from the outbox), then live ones."""

import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from datetime import datetime

from sqlalchemy import select, tuple_

from domains.database import Database
from domains.errors import InvalidInput, NotFound
from domains.events.cloudevent import CloudEvent
from domains.outbox import OutboxEvent
from subscriptions.hub import Hub

outbox = OutboxEvent.__table__
# Catch-up events carry this source; the payload a client sees does not depend on it.
CATCH_UP_SOURCE = "urn:kabinet:outbox"


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
    customer_id: int,
    owner: int,
    types: frozenset[str],
    after: str | None,
    catch_up_limit: int,
) -> AsyncIterator[CloudEvent]:
    """The customer's events of `types`: those after event `after` first, then live ones.

    The hub registration comes before the catch-up read, so an event committed in between is
    in one or both of them, never in neither; the duplicates are skipped.
    """
    subscriber = hub.subscribe(customer_id, types, owner=owner)
    try:
        seen = _Seen(catch_up_limit + hub.queue_size)
        if after is not None:
            for event in await missed(db, customer_id, types, after, catch_up_limit):
                seen.add(event.id)
                yield event
        while True:
            event = await subscriber.next()
            if seen.add(event.id):
                yield event
    finally:
        hub.unsubscribe(subscriber)


async def missed(
    db: Database, customer_id: int, types: frozenset[str], after: str, limit: int
) -> list[CloudEvent]:
    """The customer's events of `types` after event `after`, oldest first, from the outbox.

    An id that is not this customer's event reads as NOT_FOUND; more than `limit` missed
    events is refused, since replaying only some of them would leave a silent gap.
    """
    try:
        after_id = uuid.UUID(after)
    except ValueError:
        raise InvalidInput("`after` must be an event id from an earlier message") from None
    subject = f"customer:{customer_id}"
    async with db.read() as conn:
        occurred_at: datetime | None = (
            await conn.execute(
                select(outbox.c.occurred_at).where(
                    outbox.c.id == after_id, outbox.c.subject == subject
                )
            )
        ).scalar_one_or_none()
        if occurred_at is None:
            raise NotFound("event")
        rows = (
            await conn.execute(
                select(outbox.c.id, outbox.c.type, outbox.c.occurred_at, outbox.c.payload)
                .where(
                    outbox.c.subject == subject,
                    outbox.c.type.in_(sorted(types)),
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
    return [
        CloudEvent(
            id=row.id,
            type=row.type,
            source=CATCH_UP_SOURCE,
            subject=subject,
            time=row.occurred_at,
            data=row.payload,
        )
        for row in rows
    ]
