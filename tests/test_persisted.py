"""Persisted queries: Apollo's APQ round trip, the safelist, and the Redis-shared store."""

import json
import secrets
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio

from gateway.app import create_app
from gateway.errors import BadRequest, graphql_error_response
from gateway.persisted import (
    PersistedQueries,
    PersistedQueryError,
    SafelistError,
    load_safelist,
    sha256_hex,
)
from gateway.settings import Settings
from tests.conftest import TEST_REDIS_URL, app_client, make_settings

REDIS_URL = TEST_REDIS_URL
ME = "{ me { id email } }"
TARIFFS = "{ tariffs { id name } }"
VALID = lambda _query: True  # noqa: E731 - the endpoint's check, which these tests do not need


def apq(query: str | None = None, sha: str | None = None) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha or sha256_hex(query or "")}}


async def refused(
    store: PersistedQueries, query: str | None, extensions: dict[str, Any] | None
) -> PersistedQueryError:
    with pytest.raises(PersistedQueryError) as caught:
        await store.resolve(query, extensions, VALID)
    return caught.value


async def test_apq_unknown_hash_then_register_then_replay():
    store = PersistedQueries()
    error = await refused(store, None, apq(ME))
    assert (error.status, error.code, error.message) == (
        200,
        "PERSISTED_QUERY_NOT_FOUND",
        "PersistedQueryNotFound",
    )
    assert await store.resolve(ME, apq(ME), VALID) == ME
    assert await store.resolve(None, apq(ME), VALID) == ME
    assert await store.resolve("", apq(ME), VALID) == ME  # some clients send an empty query


async def test_not_found_is_the_body_apollo_clients_retry_on():
    error = await refused(PersistedQueries(), None, apq(ME))
    assert isinstance(error, BadRequest)  # the handler's own error path answers it
    response = graphql_error_response(error.status, error.code, error.message)
    assert response.status_code == 200
    assert json.loads(response.body) == {
        "errors": [
            {
                "message": "PersistedQueryNotFound",
                "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
            }
        ]
    }


async def test_hash_must_match_the_query():
    store = PersistedQueries()
    error = await refused(store, TARIFFS, apq(ME))
    assert (error.status, error.code, error.message) == (
        400,
        "BAD_REQUEST",
        "provided sha does not match query",
    )
    assert (await refused(store, None, apq(ME))).code == "PERSISTED_QUERY_NOT_FOUND"


@pytest.mark.parametrize(
    "extensions",
    [
        {"persistedQuery": {"version": 2, "sha256Hash": sha256_hex(ME)}},
        {"persistedQuery": {"version": 1, "sha256Hash": "abc"}},
        {"persistedQuery": {"version": 1}},
        {"persistedQuery": "yes"},
    ],
)
async def test_malformed_persisted_query_extension(extensions: dict[str, Any]):
    error = await refused(PersistedQueries(), ME, extensions)
    assert (error.status, error.code) == (400, "BAD_REQUEST")


async def test_plain_queries_pass_through_and_a_missing_query_is_refused():
    store = PersistedQueries()
    assert await store.resolve(ME, None, VALID) == ME
    assert await store.resolve(ME, {"other": True}, VALID) == ME
    error = await refused(store, None, None)
    assert (error.status, error.code) == (400, "BAD_REQUEST")


async def test_hash_is_accepted_in_upper_case():
    store = PersistedQueries()
    await store.resolve(ME, apq(ME), VALID)
    assert await store.resolve(None, apq(sha=sha256_hex(ME).upper()), VALID) == ME


async def test_local_store_is_bounded():
    store = PersistedQueries(local_entries=2)
    queries = [f"{{ q{i}: tariffs {{ id }} }}" for i in range(3)]
    for query in queries:
        await store.resolve(query, apq(query), VALID)
    assert (await refused(store, None, apq(queries[0]))).code == "PERSISTED_QUERY_NOT_FOUND"
    assert await store.resolve(None, apq(queries[2]), VALID) == queries[2]


async def test_local_store_is_bounded_in_bytes():
    store = PersistedQueries(local_bytes=100)
    queries = [f"{{ q{i}: tariffs {{ id name }} {' ' * 30}}}" for i in range(3)]  # ~50 bytes
    for query in queries:
        await store.resolve(query, apq(query), VALID)
    assert (await refused(store, None, apq(queries[0]))).code == "PERSISTED_QUERY_NOT_FOUND"
    assert await store.resolve(None, apq(queries[2]), VALID) == queries[2]


async def test_text_that_is_no_valid_operation_runs_but_is_not_kept():
    """Issue 12, point 9: anything sent with a hash was stored (for a day, in Redis) before
    it was parsed."""
    store = PersistedQueries()
    junk = "x" * 5000
    assert await store.resolve(junk, apq(junk), lambda _query: False) == junk
    assert (await refused(store, None, apq(junk))).code == "PERSISTED_QUERY_NOT_FOUND"


# Safelist --------------------------------------------------------------------------------


def write_safelist(tmp_path: Path, entries: dict[str, str]) -> Path:
    path = tmp_path / "persisted-queries.json"
    path.write_text(json.dumps(entries))
    return path


def safelist_settings(path: Path | None, *, only: bool = True) -> Settings:
    return Settings(persisted_queries_only=only, persisted_queries_file=path)


async def test_safelist_accepts_registered_operations_only(tmp_path: Path):
    path = write_safelist(tmp_path, {sha256_hex(ME): ME})
    store = PersistedQueries.from_settings(safelist_settings(path))
    assert await store.resolve(None, apq(ME), VALID) == ME
    assert await store.resolve(ME, apq(ME), VALID) == ME
    assert await store.resolve(ME, None, VALID) == ME  # the full text of a registered operation
    for query, extensions in (
        (TARIFFS, None),  # a full query not in the list
        (None, apq(TARIFFS)),  # an unknown hash: no point in the client retrying
        (TARIFFS, apq(TARIFFS)),  # APQ registration
    ):
        error = await refused(store, query, extensions)
        assert (error.status, error.code) == (400, "PERSISTED_QUERY_NOT_ALLOWED")
    assert (await refused(store, TARIFFS, apq(ME))).code == "BAD_REQUEST"


async def test_safelist_file_without_the_only_switch_preregisters(tmp_path: Path):
    path = write_safelist(tmp_path, {sha256_hex(ME): ME})
    store = PersistedQueries.from_settings(safelist_settings(path, only=False))
    assert await store.resolve(None, apq(ME), VALID) == ME
    assert await store.resolve(TARIFFS, None, VALID) == TARIFFS
    assert await store.resolve(TARIFFS, apq(TARIFFS), VALID) == TARIFFS


@pytest.mark.parametrize(
    "content",
    [
        json.dumps({sha256_hex(ME): TARIFFS}),  # a hash of another query
        json.dumps({sha256_hex(ME).upper(): ME}),
        json.dumps({sha256_hex(ME): ""}),
        json.dumps([ME]),
        "{not json",
    ],
)
def test_bad_safelist_fails_at_load(tmp_path: Path, content: str):
    path = tmp_path / "persisted-queries.json"
    path.write_text(content)
    with pytest.raises(SafelistError):
        load_safelist(path)
    with pytest.raises(SafelistError):
        PersistedQueries.from_settings(safelist_settings(path))


def test_safelist_mode_needs_a_file(tmp_path: Path):
    with pytest.raises(SafelistError):
        PersistedQueries.from_settings(safelist_settings(None))
    with pytest.raises(SafelistError):
        PersistedQueries.from_settings(safelist_settings(tmp_path / "missing.json"))


# Redis -----------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def redis_client() -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def prefix(redis_client: redis.asyncio.Redis) -> AsyncIterator[str]:
    prefix = f"kabinet-test:apq:{secrets.token_hex(6)}:"
    yield prefix
    keys = [key async for key in redis_client.scan_iter(match=f"{prefix}*")]
    if keys:
        await redis_client.delete(*keys)


async def test_redis_shares_registrations_between_instances(
    redis_client: redis.asyncio.Redis, prefix: str
):
    one = PersistedQueries(redis=redis_client, redis_prefix=prefix)
    other = PersistedQueries(redis=redis_client, redis_prefix=prefix)
    assert (await refused(other, None, apq(ME))).code == "PERSISTED_QUERY_NOT_FOUND"
    assert await one.resolve(ME, apq(ME), VALID) == ME
    assert await other.resolve(None, apq(ME), VALID) == ME
    key = f"{prefix}{sha256_hex(ME)}"
    assert await redis_client.get(key) == ME.encode()
    assert 0 < await redis_client.ttl(key) <= 24 * 3600


async def test_redis_entries_that_do_not_hash_right_are_ignored(
    redis_client: redis.asyncio.Redis, prefix: str
):
    await redis_client.set(f"{prefix}{sha256_hex(ME)}", TARIFFS, ex=60)
    store = PersistedQueries(redis=redis_client, redis_prefix=prefix)
    assert (await refused(store, None, apq(ME))).code == "PERSISTED_QUERY_NOT_FOUND"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_redis_down_costs_a_retry_not_the_request():
    # The client's default retries would take seconds; the store gives up sooner.
    down = redis.asyncio.Redis(host="127.0.0.1", port=_closed_port())
    try:
        store = PersistedQueries(redis=down)
        assert (await refused(store, None, apq(ME))).code == "PERSISTED_QUERY_NOT_FOUND"
        assert await store.resolve(ME, apq(ME), VALID) == ME
        assert await store.resolve(None, apq(ME), VALID) == ME  # from this instance's own store
    finally:
        await down.aclose()


# Through the app --------------------------------------------------------------------------


@pytest.mark.postgres
async def test_the_gateway_keeps_only_operations_its_schema_accepts(
    pg_demo_url: str, signing_key: bytes, redis_client: redis.asyncio.Redis, prefix: str
):
    """Registered in the cache Redis (`KABINET_CACHE_REDIS_URL`) only once they parse and
    validate: junk and an operation on fields that do not exist are answered with their
    errors and leave nothing behind."""
    settings = make_settings(pg_demo_url, signing_key, cache_redis_url=REDIS_URL)
    app = create_app(settings)
    app.state.services.persisted._prefix = prefix  # this test's keys only
    async for client in app_client(app):
        for text in ("{ tariffs { id name } }", "not graphql at all", "{ nosuchfield }"):
            payload = {"query": text, "extensions": apq(text)}
            answer = (await client.post("/graphql", json=payload)).json()
            stored = await redis_client.get(prefix + sha256_hex(text))
            if text.startswith("{ tariffs"):
                assert "errors" not in answer
                assert stored == text.encode()
            else:
                assert answer["errors"]
                assert stored is None
