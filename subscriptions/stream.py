"""One subscriber's stream: what it missed (from the outbox), then its feed's live events."""

import uuid
from collections.abc import Awaitable, Callable, Hashable
from datetime import datetime
from inspect import isawaitable

from sqlalchemy import select, tuple_

from domains.database import Database
from domains.errors import InvalidInput, NotFound
from domains.events.catalog import EventCatalog
from domains.events.cloudevent import CloudEvent
from domains.outbox import OutboxEvent
from subscriptions.hub import Hub, Render, Subscriber, Writer

outbox = OutboxEvent.__table__


async def follow(
    hub: Hub,
    db: Database,
    *,
    key: Hashable,
    subject: str | None,
    types: frozenset[str],
    owner: int,
    after: str | None,
    catch_up_limit: int,
    catalog: EventCatalog,
    render: Callable[[], Render],
    send: Callable[[bytes], Awaitable[None]],
    writer: Writer | None = None,
    adopt: Callable[[Subscriber], None] | None = None,
) -> None:
    """Sends the events of `types` about `subject` (about any subject when None: an
    audience's), rendered by the feed of `key`: those after event `after` first, then live
    ones. With a writer and `adopt`, returns once caught up, the subscriber handed to
    `adopt`: the feed writes to it, and its transport lets it go (`Hub.leave`). Otherwise
    returns never: raises SlowConsumer once dropped, ends when cancelled.

    The feed registration comes before the catch-up read, so an event committed in between
    is in one or both of them, never in neither; the live copies of what the catch-up sent
    are skipped.
    """
    subscriber = hub.join(key, types, subject=subject, owner=owner, render=render, writer=writer)
    adopted = False
    try:
        sent: list[uuid.UUID] = []
        if after is not None:
            for event in await missed(
                db, subject, types, after, limit=catch_up_limit, catalog=catalog
            ):
                rendered = subscriber.feed.render(event)
                body = await rendered if isawaitable(rendered) else rendered
                if body is not None:
                    await send(body)
                sent.append(event.id)
        subscriber.release(sent)
        if adopt is not None and writer is not None:
            adopt(subscriber)
            adopted = True
            return
        await subscriber.pump(send)
    finally:
        if not adopted:
            hub.leave(subscriber)


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
