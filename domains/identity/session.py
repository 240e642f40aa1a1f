"""Sessions: opened at sign-in, checked on every request, ended by logout or revocation.

Two records of each session: the `sessions` table (durable: created, revoked, last seen to
the minute) and the session store (live: Redis or a dict; see session_store.py), which the
per-request check reads. Why it stays correct when the store forgets:

- Redis here keeps nothing on disk, so a restart or FLUSHDB empties it. A session the store
  does not know is read from the table and copied back if it is still alive there: users
  stay signed in, and their idle time is counted from the last_seen_at the table holds,
  at most `PERSIST_INTERVAL` old.
- A revocation writes `revoked_at` and a store tombstone in one unit of work. The check
  trusts a tombstone, and the copy-back trusts the table, so a revoked session never
  comes back, whichever of the two was lost.
- While the store is unreachable, checks fail (closed): an outage must not let revoked
  tokens through.

Each app also caches check results for `check_cache_seconds` (at most a few seconds): a
revocation by another instance takes effect within that time; one by this instance at once.
Every timeout is read on the app's clock (domains/clock.py).
"""

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domains.clock import Clock
from domains.database import Database
from domains.identity.models import Session
from domains.identity.session_store import SessionStore, StoredSession
from domains.reads import Read, select_rows

sessions = Session.__table__

# How stale the table's last_seen_at may get: one write per session per minute, not per request.
PERSIST_INTERVAL = timedelta(minutes=1)
DEVICE_INFO_LENGTH = 512
_CACHE_LIMIT = 10_000  # cached checks per app; cleared when full, refilled by the next requests

# Told, in the unit of work that ended them, that a user's last live session ended: the
# domains that keep state per signed-in user (support's operator presence) declare one
# (`Domain.sessions_ended`), and the wiring hands them to `Sessions`.
SessionsEnded = Callable[[AsyncSession, int, datetime], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Client:
    """Who signs in from where, as the transport saw it."""

    ip_address: str | None = None
    user_agent: str = ""
    device: str | None = None  # the client's own name for itself, e.g. "Alice's phone"

    @property
    def device_info(self) -> str:
        parts = [part.strip() for part in (self.device, self.user_agent) if part and part.strip()]
        text = " · ".join(parts)
        # Shown back to the user: no control characters, bounded length.
        return "".join(ch for ch in text if ch.isprintable())[:DEVICE_INFO_LENGTH]


@dataclass(frozen=True, slots=True)
class SessionRow:
    """A session as its owner sees it in the list of their devices."""

    id: uuid.UUID
    device_info: str
    ip_address: str | None
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    current: bool


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A session as the table keeps it."""

    id: uuid.UUID
    user_id: int
    device_info: str
    ip_address: str | None
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


SESSION_BY_ID = Read(
    SessionRecord, select_rows(SessionRecord, sessions).where(sessions.c.id == bindparam("id"))
)
LIVE_SESSIONS_OF_USER = Read(
    SessionRecord,
    select_rows(SessionRecord, sessions)
    .where(
        sessions.c.user_id == bindparam("user_id"),
        sessions.c.revoked_at.is_(None),
        sessions.c.expires_at > bindparam("now"),
    )
    .order_by(sessions.c.created_at.desc(), sessions.c.id),
)


def may_be_alive(now: datetime, idle_timeout: timedelta) -> ColumnElement[bool]:
    """A `sessions` row that may still be alive at `now`: not revoked, not expired, and
    used within the idle timeout. The table's last_seen_at lags the store's by up to
    PERSIST_INTERVAL, so a session in use is never taken for idle; one idle longer has
    ended though nobody revoked it."""
    return and_(
        sessions.c.revoked_at.is_(None),
        sessions.c.expires_at > now,
        sessions.c.last_seen_at > now - idle_timeout - PERSIST_INTERVAL,
    )


class Sessions:
    """The session rules of one app: timeouts, the store, and the check cache."""

    def __init__(
        self,
        db: Database,
        store: SessionStore,
        clock: Clock,
        *,
        idle_timeout: timedelta,
        absolute_timeout: timedelta,
        check_cache_seconds: float,
        on_all_ended: Sequence[SessionsEnded] = (),
    ) -> None:
        self.db = db
        self.on_all_ended = tuple(on_all_ended)
        self.store = store
        self.clock = clock
        self.idle_timeout = idle_timeout
        self.absolute_timeout = absolute_timeout
        self._cache_for = timedelta(seconds=check_cache_seconds)
        self._checked: dict[tuple[uuid.UUID, int], tuple[datetime, bool]] = {}

    async def open(self, tx: AsyncSession, user_id: int, client: Client) -> StoredSession:
        """Starts a session in the caller's unit of work."""
        now = self.clock.now()
        session = StoredSession(
            id=uuid.uuid4(),
            user_id=user_id,
            created_at=now,
            expires_at=now + self.absolute_timeout,
            last_seen_at=now,
            persisted_seen_at=now,
        )
        await tx.execute(
            sessions.insert().values(
                id=session.id,
                user_id=user_id,
                device_info=client.device_info,
                ip_address=client.ip_address,
                created_at=now,
                last_seen_at=now,
                expires_at=session.expires_at,
            )
        )
        return await self.store.add(session)

    async def is_alive(self, session_id: uuid.UUID, user_id: int) -> bool:
        """The per-request check, cached for a few seconds per app."""
        key = (session_id, user_id)
        cached = self._checked.get(key)
        # A clock stepped back since the answer was cached makes it stale, not fresh for longer.
        if cached is not None and timedelta(0) <= self.clock.now() - cached[0] < self._cache_for:
            return cached[1]
        alive = await self.use(session_id, user_id) is not None
        if self._cache_for > timedelta(0):
            if len(self._checked) >= _CACHE_LIMIT:
                self._checked.clear()
            self._checked[key] = (self.clock.now(), alive)
        return alive

    async def use(self, session_id: uuid.UUID, user_id: int) -> StoredSession | None:
        """The session if it is alive and `user_id`'s, recording the use; None otherwise."""
        now = self.clock.now()
        found = await self.store.get(session_id) or await self._copy_back(session_id)
        if found is None or found.user_id != user_id or not self._alive(found, now):
            return None
        persist = now - found.persisted_seen_at >= PERSIST_INTERVAL
        if persist:
            async with self.db.transaction() as tx:
                await tx.execute(
                    update(sessions)
                    .where(sessions.c.id == session_id, sessions.c.revoked_at.is_(None))
                    .values(last_seen_at=now)
                )
        await self.store.touch(session_id, now, persisted=persist)
        return found

    async def alive_among(self, keys: Sequence[tuple[uuid.UUID, int]]) -> set[uuid.UUID]:
        """Which of these (session, user) pairs are alive, read in one store round trip (the
        table only for sessions the store lost); a check only, not a use."""
        now = self.clock.now()
        found = await self.store.get_many([session_id for session_id, _user in keys])
        alive = set()
        for (session_id, user_id), session in zip(keys, found, strict=True):
            session = session or await self._copy_back(session_id)
            if session is not None and session.user_id == user_id and self._alive(session, now):
                alive.add(session_id)
        return alive

    async def revoke(
        self,
        tx: AsyncSession,
        user_id: int,
        *,
        only: uuid.UUID | None = None,
        keep: uuid.UUID | None = None,
    ) -> int:
        """Ends `user_id`'s live sessions (just `only`, or all but `keep`); returns how many."""
        stmt = update(sessions).where(
            sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None)
        )
        if only is not None:
            stmt = stmt.where(sessions.c.id == only)
        if keep is not None:
            stmt = stmt.where(sessions.c.id != keep)
        ended = (
            await tx.execute(
                stmt.values(revoked_at=self.clock.now()).returning(
                    sessions.c.id,
                    sessions.c.created_at,
                    sessions.c.expires_at,
                    sessions.c.last_seen_at,
                )
            )
        ).all()
        for session_id, created_at, expires_at, last_seen_at in ended:
            await self.store.revoke(
                StoredSession(
                    session_id, user_id, created_at, expires_at, last_seen_at, last_seen_at
                )
            )
            self._checked.pop((session_id, user_id), None)
        if ended and self.on_all_ended and not await self._any_alive(tx, user_id):
            for told in self.on_all_ended:
                await told(tx, user_id, self.clock.now())
        return len(ended)

    async def _any_alive(self, tx: AsyncSession, user_id: int) -> bool:
        found = await tx.execute(
            select(sessions.c.id)
            .where(
                sessions.c.user_id == user_id,
                may_be_alive(self.clock.now(), self.idle_timeout),
            )
            .limit(1)
        )
        return found.first() is not None

    async def of_user(self, user_id: int, current: uuid.UUID | None) -> list[SessionRow]:
        """The user's live sessions, newest first, last use taken from the store."""
        now = self.clock.now()
        async with self.db.read() as reader:
            found = await reader.fetch(LIVE_SESSIONS_OF_USER, user_id=user_id, now=now)
        # One store round trip for the whole list, not one per session.
        lives = await self.store.get_many([record.id for record in found])
        rows = []
        for record, live in zip(found, lives, strict=True):
            last_seen_at = record.last_seen_at
            if live is not None:
                if live.revoked:
                    continue
                last_seen_at = max(last_seen_at, live.last_seen_at)
            if now - last_seen_at >= self.idle_timeout:
                continue
            rows.append(
                SessionRow(
                    record.id,
                    record.device_info,
                    record.ip_address,
                    record.created_at,
                    last_seen_at,
                    record.expires_at,
                    current=record.id == current,
                )
            )
        return rows

    def _alive(self, session: StoredSession, now: datetime) -> bool:
        return (
            not session.revoked
            and now < session.expires_at
            and now - session.last_seen_at < self.idle_timeout
        )

    async def _copy_back(self, session_id: uuid.UUID) -> StoredSession | None:
        """The table's record of a session the store lost, put back into the store."""
        async with self.db.read() as reader:
            found = await reader.fetch(SESSION_BY_ID, id=session_id)
        if not found:
            return None
        (record,) = found
        return await self.store.add(
            StoredSession(
                session_id,
                record.user_id,
                record.created_at,
                record.expires_at,
                record.last_seen_at,
                record.last_seen_at,
                revoked=record.revoked_at is not None,
            )
        )
