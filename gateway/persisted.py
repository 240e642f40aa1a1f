"""Persisted queries: Apollo's APQ protocol, or a safelist of the operations clients ship.

APQ: a client sends `extensions.persistedQuery = {"version": 1, "sha256Hash": h}`. Unknown
`h` alone is answered PERSISTED_QUERY_NOT_FOUND with HTTP 200, as Apollo clients expect,
and they retry with the query, which is checked against `h` and, if it is an operation the
schema accepts (it parses and validates), remembered: in process (an LRU bounded in count
and bytes), and in the cache Redis when given (`KABINET_CACHE_REDIS_URL`: an instance with
an eviction policy, so the cache cannot crowd out sessions), so every instance knows it.
Text that is not a valid operation is run (and answered with its errors) but never stored.

Safelist (`persisted_queries_only`): only the operations of a JSON file `{sha256: query}`
run, by hash or in full; nothing can be registered.
"""

import asyncio
import hashlib
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from gateway.errors import BadRequest
from gateway.settings import Settings

if TYPE_CHECKING:
    import redis.asyncio

logger = logging.getLogger("kabinet.persisted")

PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
PERSISTED_QUERY_NOT_ALLOWED = "PERSISTED_QUERY_NOT_ALLOWED"
BAD_REQUEST = "BAD_REQUEST"

LOCAL_ENTRIES = 1024
LOCAL_BYTES = 4 * 1024 * 1024
REDIS_PREFIX = "kabinet:apq:"
REDIS_TTL = timedelta(days=1)
# A lookup must not hold the request up while Redis (or the client's retries) stalls.
REDIS_TIMEOUT_SECONDS = 0.5
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class PersistedQueryError(BadRequest):
    """Turned into a GraphQL error body by the handler, like any BadRequest."""


def sha256_hex(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()


class SafelistError(ValueError):
    """The safelist file cannot be trusted; the gateway must not start with it."""


def load_safelist(path: Path) -> dict[str, str]:
    """`{sha256: query}` from a JSON file, every hash checked against its query."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise SafelistError(f"cannot read persisted queries from {path}: {error}") from None
    if not isinstance(entries, dict):
        raise SafelistError(f"{path}: expected a JSON object {{sha256: query}}")
    for sha, query in entries.items():
        if not isinstance(query, str) or not query:
            raise SafelistError(f"{path}: the query under {sha!r} is not a non-empty string")
        if sha != sha256_hex(query):
            raise SafelistError(f"{path}: {sha!r} is not the sha256 of its query")
    return entries


class PersistedQueries:
    """Turns a request's `query` and `extensions` into the query text to execute.

    `registered` operations are always accepted; with `only_registered` nothing else is.
    Otherwise clients may register queries (APQ), kept in a local LRU of `local_entries`
    and, when `redis` is given, under `redis_prefix` for `redis_ttl`. Redis being down or
    slower than `redis_timeout` seconds only costs clients a retry with the full query.
    """

    def __init__(
        self,
        *,
        registered: Mapping[str, str] | None = None,
        only_registered: bool = False,
        redis: "redis.asyncio.Redis | None" = None,
        local_entries: int = LOCAL_ENTRIES,
        local_bytes: int = LOCAL_BYTES,
        redis_prefix: str = REDIS_PREFIX,
        redis_ttl: timedelta = REDIS_TTL,
        redis_timeout: float = REDIS_TIMEOUT_SECONDS,
    ) -> None:
        self.registered = dict(registered or {})
        self.only_registered = only_registered
        self._local: OrderedDict[str, str] = OrderedDict()
        self._local_entries = local_entries
        self._local_bytes = local_bytes
        self._local_size = 0
        self._redis = redis
        self._prefix = redis_prefix
        self._ttl_seconds = max(int(redis_ttl.total_seconds()), 1)
        self._timeout = redis_timeout

    @classmethod
    def from_settings(
        cls, settings: Settings, redis: "redis.asyncio.Redis | None" = None
    ) -> "PersistedQueries":
        """Raises SafelistError when the safelist is required but missing or corrupt."""
        path = settings.persisted_queries_file
        if settings.persisted_queries_only and path is None:
            raise SafelistError("persisted_queries_only needs persisted_queries_file")
        return cls(
            registered=load_safelist(path) if path is not None else None,
            only_registered=settings.persisted_queries_only,
            redis=redis,
        )

    async def resolve(
        self, query: str | None, extensions: dict[str, Any] | None, valid: Callable[[str], bool]
    ) -> str:
        """The query to execute; raises PersistedQueryError when there is none to run.
        `valid` says whether a query the client registers is an operation worth keeping."""
        sha = _requested_hash(extensions)
        if sha is None:
            if not isinstance(query, str) or not query:
                raise PersistedQueryError(400, BAD_REQUEST, "'query' must be a non-empty string")
            if self.only_registered and sha256_hex(query) not in self.registered:
                raise _not_allowed()
            return query
        if query is None or query == "":
            found = self.registered.get(sha) or await self._lookup(sha)
            if found is not None:
                return found
            if self.only_registered:
                raise _not_allowed()
            raise PersistedQueryError(200, PERSISTED_QUERY_NOT_FOUND, "PersistedQueryNotFound")
        if not isinstance(query, str) or sha256_hex(query) != sha:
            raise PersistedQueryError(400, BAD_REQUEST, "provided sha does not match query")
        if sha not in self.registered:
            if self.only_registered:
                raise _not_allowed()
            if valid(query):
                await self._remember(sha, query)
        return query

    async def _lookup(self, sha: str) -> str | None:
        if self.only_registered:
            return None
        query = self._local.get(sha)
        if query is not None:
            self._local.move_to_end(sha)
            return query
        if self._redis is None:
            return None
        try:
            async with asyncio.timeout(self._timeout):
                value = await self._redis.get(self._prefix + sha)
        except (RedisError, OSError, TimeoutError):
            logger.warning("persisted query lookup failed; the client will resend the query")
            return None
        if value is None:
            return None
        query = value.decode() if isinstance(value, bytes) else str(value)
        # Only what hashes right is trusted, whoever else writes under the prefix.
        if sha256_hex(query) != sha:
            return None
        self._keep_local(sha, query)
        return query

    async def _remember(self, sha: str, query: str) -> None:
        self._keep_local(sha, query)
        if self._redis is None:
            return
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.set(self._prefix + sha, query, ex=self._ttl_seconds)
        except (RedisError, OSError, TimeoutError):
            logger.warning("persisted query not shared: Redis is unavailable")

    def _keep_local(self, sha: str, query: str) -> None:
        if len(query) > self._local_bytes:
            return
        previous = self._local.pop(sha, None)
        self._local_size += len(query) - (len(previous) if previous is not None else 0)
        self._local[sha] = query
        while len(self._local) > self._local_entries or self._local_size > self._local_bytes:
            _, dropped = self._local.popitem(last=False)
            self._local_size -= len(dropped)


def _requested_hash(extensions: dict[str, Any] | None) -> str | None:
    """The sha256 of `extensions.persistedQuery`, or None when the request has none."""
    if not extensions:
        return None
    persisted = extensions.get("persistedQuery")
    if persisted is None:
        return None
    if not isinstance(persisted, dict) or persisted.get("version") != 1:
        raise PersistedQueryError(
            400, BAD_REQUEST, "'extensions.persistedQuery' must be {version: 1, sha256Hash}"
        )
    sha = persisted.get("sha256Hash")
    if not isinstance(sha, str) or not _SHA256_HEX.fullmatch(sha.lower()):
        raise PersistedQueryError(400, BAD_REQUEST, "'sha256Hash' must be 64 hex digits")
    return sha.lower()


def _not_allowed() -> PersistedQueryError:
    return PersistedQueryError(
        400, PERSISTED_QUERY_NOT_ALLOWED, "only registered persisted queries are accepted"
    )
