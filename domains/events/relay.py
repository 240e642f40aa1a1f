"""The outbox relay: committed outbox rows go to the bus as CloudEvents, then are marked.

At-least-once: a row is marked published only after the broker acknowledged it, so a
relay that dies between the two publishes the row again on restart, with the same event
id (the outbox id) for consumers to recognise. One subject's rows are published one after
another, oldest first, and a failure stops that subject's rows for this batch, so its
events reach the topic in order; different subjects are published together, the next row
of each in one round of sends (`EventBus.publish_many`).

The relay does not poll while idle: a commit that wrote rows wakes it (the outbox insert's
NOTIFY, which the leader LISTENs for on its connection; on SQLite the Database's
`events_committed`, in this process), and it looks unprompted only every
`fallback_poll_interval`, for rows no wake-up announced. A wake-up during a batch runs the
next batch straight after. While publishing fails it backs off, from `retry_backoff`
doubling up to `max_backoff`, wake-ups or not.

On PostgreSQL only one relay publishes at a time: it holds a session advisory lock on a
connection of its own, and reads and marks through that same connection, so losing the
connection loses the lock, the marking and the listening together: when it drops the relay
is woken, and leads again on a new connection (or stands by, if another relay took the
lock). Other relays stand by, trying for the lock now and then. SQLite (the embedded mode)
has one process, hence one relay.

Published rows stay for `purge_published` (subscribers catching up read them).
"""

import asyncio
import logging
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from domains.clock import utcnow
from domains.database import Database
from domains.events.bus import EventBus
from domains.events.catalog import EventCatalog
from domains.events.cloudevent import CloudEvent
from domains.outbox import OUTBOX_CHANNEL, OutboxEvent
from domains.reads import any_of

log = logging.getLogger(__name__)

outbox = OutboxEvent.__table__

# pg_advisory_lock key of the publishing relay: "kabinet.outbox" folded into a bigint.
RELAY_LOCK_KEY = 0x6B61_6269_6E65_7401
# One statement whatever the batch's size: the ids are one array parameter.
_MARK = (
    update(outbox)
    .where(any_of(outbox.c.id, "ids"))
    .values(published_at=bindparam("now", type_=outbox.c.published_at.type))
)
# A standby tries for the lock this often at most.
STANDBY_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class _Outcome:
    published: list[Row[Any]]
    error: Exception | None


class OutboxRelay:
    def __init__(
        self,
        db: Database,
        bus: EventBus,
        *,
        catalog: EventCatalog,
        batch_size: int = 500,
        fallback_poll_interval: float = 5.0,
        retry_backoff: float = 0.05,
        max_backoff: float = 30.0,
    ) -> None:
        self.db = db
        self.bus = bus
        self.catalog = catalog
        self.batch_size = batch_size
        self.fallback_poll_interval = fallback_poll_interval
        self.retry_backoff = retry_backoff
        self.max_backoff = max_backoff
        # For metrics: events the broker acknowledged since start, and the last failure.
        self.published_total = 0
        self.last_error: str | None = None
        # True when the last batch read the whole backlog and published it: the backlog is
        # empty then, as far as this relay knows, without counting it.
        self.caught_up = False
        self._conn: AsyncConnection | None = None  # holds the lock on PostgreSQL
        self._lost = False  # the connection dropped; it is replaced on the next batch
        self._wake = asyncio.Event()
        self._topics_ready = False
        self._failures = 0
        self._unpublishable: set[uuid.UUID] = set()

    @property
    def is_leader(self) -> bool:
        return self._conn is not None

    @property
    def failing(self) -> bool:
        """True from a failed attempt until the next one succeeds."""
        return self._failures > 0

    async def run(self, stop: asyncio.Event) -> None:
        """Publishes until `stop` is set; the batch in flight is finished first."""
        if self.db.is_sqlite:
            self.db.events_committed.add(self._wake.set)
        try:
            while not stop.is_set():
                self._wake.clear()  # set again during the batch: the next one runs at once
                try:
                    published = await self.run_once()
                except Exception as error:  # any failure: back off and retry
                    await _any_set([stop], self._failed(error))
                    continue
                self._recovered()
                if published == self.batch_size:
                    continue  # more are waiting
                if self.is_leader:
                    await _any_set([stop, self._wake], self.fallback_poll_interval)
                else:
                    await _any_set([stop], STANDBY_INTERVAL)
        finally:
            self.db.events_committed.discard(self._wake.set)
            await self.close()

    async def run_once(self) -> int:
        """Publishes one batch when this relay leads; returns how many were published.
        Raises the batch's first publishing failure after marking what did get through."""
        try:
            read, published = await self._batch()
        except Exception:
            self.caught_up = False
            raise
        # Set only once a batch is done, so a batch in flight does not make it look behind.
        self.caught_up = self.is_leader and published == read < self.batch_size
        return published

    async def _batch(self) -> tuple[int, int]:
        """Rows read and rows published by one batch."""
        conn = await self._lead()
        if conn is None:
            return 0, 0
        try:
            async with conn.begin():
                rows = (
                    await conn.execute(
                        select(outbox)
                        .where(outbox.c.published_at.is_(None))
                        .order_by(outbox.c.occurred_at, outbox.c.id)
                        .limit(self.batch_size)
                    )
                ).all()
        except Exception:
            await self._resign()
            raise
        if not rows:
            return 0, 0
        if not self._topics_ready:
            await self.bus.ensure_topics(self.catalog.all_topics)
            self._topics_ready = True
        outcome = await self._publish(rows)
        try:
            await self._mark(conn, outcome.published)
        except Exception:
            await self._resign()
            raise
        self.published_total += len(outcome.published)
        if outcome.error is not None:
            # The broker may have lost its topics (a restart without its log).
            self._topics_ready = False
            raise outcome.error
        return len(rows), len(outcome.published)

    async def pending(self) -> int:
        """Rows not yet published: the backlog a dashboard watches."""
        async with self.db.connect() as conn:
            stmt = select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
            return int((await conn.execute(stmt)).scalar_one())

    async def purge_published(self, older_than: timedelta, now: datetime | None = None) -> int:
        """Deletes rows published more than `older_than` ago; returns how many."""
        cutoff = (now or utcnow()) - older_than
        async with self.db.transaction() as tx:
            result = await tx.execute(
                delete(outbox).where(
                    outbox.c.published_at.is_not(None), outbox.c.published_at < cutoff
                )
            )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def close(self) -> None:
        """Releases the lock (by closing its connection): a standby takes over."""
        await self._resign()

    async def _lead(self) -> AsyncConnection | None:
        if self._lost:
            await self._resign()
        if self._conn is not None:
            return self._conn
        conn = await self.db.engine.connect()
        try:
            if not self.db.is_sqlite:
                async with conn.begin():
                    locked = await conn.scalar(select(func.pg_try_advisory_lock(RELAY_LOCK_KEY)))
                if not locked:
                    await conn.close()
                    return None
                # Before the batch reads: a commit after this point wakes the relay, one
                # before it is in what the batch reads.
                await self._listen(conn)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        return conn

    async def _listen(self, conn: AsyncConnection) -> None:
        """Wakes the relay on each NOTIFY of the outbox insert, and when the connection drops
        (its lock went with it, so the next batch leads on a new one or stands by)."""
        driver = (await conn.get_raw_connection()).driver_connection  # asyncpg's Connection

        def lost(*_: object) -> None:
            if self._conn is conn:  # not one this relay closed itself
                self._lost = True
                self._wake.set()

        await driver.add_listener(OUTBOX_CHANNEL, lambda *_: self._wake.set())
        driver.add_termination_listener(lost)

    async def _resign(self) -> None:
        self._lost = False
        if self._conn is not None:
            conn, self._conn = self._conn, None
            # Discarded, not returned to the pool: a pooled connection would keep the lock.
            try:
                await conn.invalidate()
            except Exception as error:  # already broken: its lock died with it
                log.debug("closing the relay's connection failed: %s", error)
            await conn.close()

    async def _publish(self, rows: Sequence[Row[Any]]) -> _Outcome:
        """Publishes in rounds: each round sends the next row of every subject still going,
        all together (`publish_many`), so a subject's row leaves only once the broker has
        its one before, and a batch of distinct subjects is a single round."""
        waiting: list[list[Row[Any]]] = []
        by_subject: dict[str, list[Row[Any]]] = {}
        for row in rows:
            if row.subject not in by_subject:
                by_subject[row.subject] = []
                waiting.append(by_subject[row.subject])
            by_subject[row.subject].append(row)
        published: list[Row[Any]] = []
        errors: list[Exception] = []
        depth = 0
        while waiting:
            going: list[tuple[list[Row[Any]], Row[Any]]] = []
            messages = []
            for subject_rows in waiting:
                row = subject_rows[depth]
                try:
                    topic, event = self._event(row)
                except ValueError as error:
                    # A programming error, not an outage: it holds back its subject's later
                    # events (their order matters) without slowing everyone else's.
                    if row.id not in self._unpublishable:
                        self._unpublishable.add(row.id)
                        log.error("outbox event %s cannot be published: %s", row.id, error)
                    continue
                going.append((subject_rows, row))
                messages.append((topic, row.subject, event.to_json()))
            outcomes = await self.bus.publish_many(messages) if messages else []
            depth += 1
            waiting = []
            for (subject_rows, row), error in zip(going, outcomes, strict=True):
                if error is not None:  # reported after the batch is marked
                    errors.append(error)
                    continue
                published.append(row)
                if depth < len(subject_rows):
                    waiting.append(subject_rows)
        return _Outcome(published, errors[0] if errors else None)

    def _event(self, row: Row[Any]) -> tuple[str, CloudEvent]:
        return self.catalog.topic_of(row.type), CloudEvent.from_outbox(row, self.catalog)

    async def _mark(self, conn: AsyncConnection, rows: list[Row[Any]]) -> None:
        if not rows:
            return
        ids = [row.id for row in rows]
        async with conn.begin():
            await conn.execute(_MARK, {"ids": ids, "now": utcnow()})

    def _failed(self, error: Exception) -> float:
        """Records the failure, logs the first of an outage, and says how long to wait."""
        self.last_error = f"{type(error).__name__}: {error}"
        if self._failures == 0:
            log.warning("outbox relay cannot publish (%s); retrying with backoff", self.last_error)
        self._failures += 1
        ceiling = min(self.max_backoff, self.retry_backoff * 2**self._failures)
        # Jitter: relays that failed together do not retry in step.
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - not for security

    def _recovered(self) -> None:
        if self._failures:
            log.info("outbox relay publishing again after %d failed attempts", self._failures)
            self._failures = 0


async def _any_set(events: Sequence[asyncio.Event], seconds: float) -> None:
    """Returns once one of `events` is set, or after `seconds`."""
    waits = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
