"""The live copy of each session: Redis when configured (adapters/redis_session_store.py),
a dict in the embedded mode.

The store answers the check every authenticated request makes (is this session still
alive, and when was it last used) without touching the database. It is a cache of the
`sessions` table, never the only record: a session the store does not know is looked up
in the table (see domains/identity/session.py). Two rules make that safe:

- A revocation overwrites the entry with a tombstone (`revoked`), it does not delete it.
- Copying a session back from the table only adds an entry that is absent (`add`), and
  returns whatever the store holds afterwards.

So a revocation racing a copy-back always wins, whichever reaches the store first.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from domains.clock import Clock


@dataclass(frozen=True, slots=True)
class StoredSession:
    id: uuid.UUID
    user_id: int
    created_at: datetime
    expires_at: datetime
    last_seen_at: datetime
    # When last_seen_at was last written to the table; it is written at most once a minute.
    persisted_seen_at: datetime
    revoked: bool = False


class SessionStore(Protocol):
    async def get(self, session_id: uuid.UUID) -> StoredSession | None:
        """The entry, a tombstone (`revoked`), or None when the store does not know it."""
        ...

    async def get_many(self, session_ids: Sequence[uuid.UUID]) -> list[StoredSession | None]:
        """`get` for each id, in one round trip: open sockets are checked all at once."""
        ...

    async def add(self, session: StoredSession) -> StoredSession:
        """Stores `session` unless an entry exists; returns the entry the store now holds."""
        ...

    async def touch(self, session_id: uuid.UUID, seen_at: datetime, *, persisted: bool) -> None:
        """Records use of a live entry (and that the table has it, if `persisted`)."""
        ...

    async def revoke(self, session: StoredSession) -> None:
        """Replaces the entry, present or not, with a tombstone kept until the session expires."""
        ...


class MemorySessionStore:
    """For one process (`make dev`): lost on restart, when the table takes over."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._sessions: dict[uuid.UUID, StoredSession] = {}

    async def get(self, session_id: uuid.UUID) -> StoredSession | None:
        return self._sessions.get(session_id)

    async def get_many(self, session_ids: Sequence[uuid.UUID]) -> list[StoredSession | None]:
        return [self._sessions.get(session_id) for session_id in session_ids]

    async def add(self, session: StoredSession) -> StoredSession:
        now = self._clock.now()
        # Expired entries go when sessions are added, so the dict follows the live ones.
        self._sessions = {k: v for k, v in self._sessions.items() if v.expires_at > now}
        return self._sessions.setdefault(session.id, session)

    async def touch(self, session_id: uuid.UUID, seen_at: datetime, *, persisted: bool) -> None:
        found = self._sessions.get(session_id)
        if found is None or found.revoked:
            return
        self._sessions[session_id] = replace(
            found,
            last_seen_at=seen_at,
            persisted_seen_at=seen_at if persisted else found.persisted_seen_at,
        )

    async def revoke(self, session: StoredSession) -> None:
        self._sessions[session.id] = replace(session, revoked=True)
