"""The session store in Redis, shared by every gateway instance (see SessionStore for the
two rules that keep it a safe cache of the `sessions` table)."""

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from redis.asyncio import Redis

from domains.clock import Clock
from domains.identity.session_store import StoredSession

# KEYS[1]: the entry; ARGV: field, value pairs, then the expiry (Unix ms) last.
_ADD = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 1, #ARGV - 1))
  redis.call('PEXPIREAT', KEYS[1], ARGV[#ARGV])
end
return redis.call('HGETALL', KEYS[1])
"""

# Only a live entry is touched: a tombstone or a missing entry stays as it is.
_TOUCH = """
if redis.call('HGET', KEYS[1], 'revoked') == '0' then
  redis.call('HSET', KEYS[1], unpack(ARGV))
end
"""


class RedisSessionStore:
    """One hash per session, expiring with the session."""

    def __init__(self, redis: Redis, clock: Clock, *, prefix: str = "kabinet:session:") -> None:
        self._redis = redis
        self._clock = clock
        self._prefix = prefix
        self._add = redis.register_script(_ADD)
        self._touch = redis.register_script(_TOUCH)

    def _key(self, session_id: uuid.UUID) -> str:
        return f"{self._prefix}{session_id}"

    async def get(self, session_id: uuid.UUID) -> StoredSession | None:
        fields = await self._redis.hgetall(self._key(session_id))
        return _decode(session_id, fields) if fields else None

    async def get_many(self, session_ids: Sequence[uuid.UUID]) -> list[StoredSession | None]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for session_id in session_ids:
                pipe.hgetall(self._key(session_id))
            found = await pipe.execute()
        return [
            _decode(session_id, fields) if fields else None
            for session_id, fields in zip(session_ids, found, strict=True)
        ]

    async def add(self, session: StoredSession) -> StoredSession:
        args = [*_encode(session), _ms(session.expires_at)]
        flat = await self._add(keys=[self._key(session.id)], args=args)
        # Nothing comes back only for a session already expired: Redis dropped it at once.
        return (
            _decode(session.id, dict(zip(flat[::2], flat[1::2], strict=True))) if flat else session
        )

    async def touch(self, session_id: uuid.UUID, seen_at: datetime, *, persisted: bool) -> None:
        args = ["last_seen_at", _ms(seen_at)]
        if persisted:
            args += ["persisted_seen_at", _ms(seen_at)]
        await self._touch(keys=[self._key(session_id)], args=args)

    async def revoke(self, session: StoredSession) -> None:
        key = self._key(session.id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping=dict(_pairs(replace(session, revoked=True))))
            pipe.pexpireat(key, max(_ms(session.expires_at), _ms(self._clock.now()) + 1000))
            await pipe.execute()


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _pairs(session: StoredSession) -> list[tuple[str, str | int]]:
    return [
        ("user_id", session.user_id),
        ("created_at", _ms(session.created_at)),
        ("expires_at", _ms(session.expires_at)),
        ("last_seen_at", _ms(session.last_seen_at)),
        ("persisted_seen_at", _ms(session.persisted_seen_at)),
        ("revoked", int(session.revoked)),
    ]


def _encode(session: StoredSession) -> list[str | int]:
    return [item for pair in _pairs(session) for item in pair]


def _decode(session_id: uuid.UUID, fields: dict[bytes, bytes]) -> StoredSession:
    def moment(name: str) -> datetime:
        return datetime.fromtimestamp(int(fields[name.encode()]) / 1000, UTC)

    return StoredSession(
        id=session_id,
        user_id=int(fields[b"user_id"]),
        created_at=moment("created_at"),
        expires_at=moment("expires_at"),
        last_seen_at=moment("last_seen_at"),
        persisted_seen_at=moment("persisted_seen_at"),
        revoked=fields[b"revoked"] == b"1",
    )
