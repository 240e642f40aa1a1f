"""GraphQL over HTTP: the spec's reference audits against the real server, then focused cases."""

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from migrations import upgrade
from tests.node import run_node

REPO_ROOT = Path(__file__).resolve().parent.parent
AUDIT_SCRIPT = REPO_ROOT / "tests" / "http" / "audit.mjs"
GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
JSON = "application/json"
STARTUP_SECONDS = 30.0

# SHOULD audits we knowingly fail, by audit id, each with the reason we deviate from the spec.
SHOULD_ALLOWLIST: dict[str, str] = {}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module", params=["development", "production"])
def server_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, signing_key: bytes
) -> Iterator[str]:
    """`kabinet serve` in a subprocess on embedded SQLite, in each environment: production
    refuses batches, repeated directives past the first and GETs without a preflight-forcing
    header, all within the spec; terminated whatever the outcome."""
    directory = tmp_path_factory.mktemp("graphql-over-http")
    database_url = f"sqlite+aiosqlite:///{directory / 'k.db'}"
    upgrade(database_url)
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("KABINET_")}
    env |= {
        "KABINET_DATABASE_URL": database_url,
        "KABINET_JWT_PRIVATE_KEY": signing_key.decode(),
        "KABINET_HOST": "127.0.0.1",
        "KABINET_PORT": str(port),
        "KABINET_LOG_LEVEL": "warning",
        "KABINET_ENV": request.param,
        # The audits' operations are introspection (`__type`), which production turns off.
        "KABINET_INTROSPECTION": "true",
        "KABINET_SINGLE_INSTANCE": "true",  # embedded SQLite: one process
    }
    log_path = directory / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(base, process, log_path)
        yield f"{base}/graphql"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_ready(base: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"server not ready after {STARTUP_SECONDS}s:\n{log_path.read_text()}")


@pytest.fixture(scope="module")
def audits(server_url: str) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = run_node(AUDIT_SCRIPT, server_url, needs="graphql-http")
    assert results, "the audit ran no checks"
    return results


def _level(audit: dict[str, Any]) -> str:
    return audit["name"].split(" ", 1)[0]


def _report(failures: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"  {a['id']} [{a['status']}] {a['name']}\n      {a['reason']}" for a in failures
    )


@pytest.mark.slow
def test_every_must_audit_passes(audits: list[dict[str, Any]]) -> None:
    musts = [a for a in audits if _level(a) == "MUST"]
    failures = [a for a in musts if a["status"] != "ok"]
    assert musts
    assert not failures, f"{len(failures)}/{len(musts)} MUST audits fail:\n{_report(failures)}"


@pytest.mark.slow
def test_every_should_audit_passes_unless_allowlisted(audits: list[dict[str, Any]]) -> None:
    shoulds = [a for a in audits if _level(a) == "SHOULD"]
    failures = [a for a in shoulds if a["status"] != "ok" and a["id"] not in SHOULD_ALLOWLIST]
    assert shoulds
    assert not failures, f"{len(failures)}/{len(shoulds)} SHOULD audits fail:\n{_report(failures)}"
    # An allowlisted audit that now passes (or no longer exists) must leave the list.
    still_failing = {a["id"] for a in shoulds if a["status"] != "ok"}
    assert set(SHOULD_ALLOWLIST) <= still_failing, set(SHOULD_ALLOWLIST) - still_failing


def _codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body["errors"]]


async def test_get_query(sqlite_client: httpx.AsyncClient) -> None:
    response = await sqlite_client.get("/graphql", params={"query": "{ __typename }"})
    assert response.status_code == 200
    assert response.headers["content-type"] == JSON
    assert response.json() == {"data": {"__typename": "Query"}}


async def test_get_mutation_is_refused(sqlite_client: httpx.AsyncClient) -> None:
    query = 'mutation { login(email: "a@example.com", password: "x") { __typename } }'
    response = await sqlite_client.get("/graphql", params={"query": query})
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert _codes(response.json()) == ["METHOD_NOT_ALLOWED"]


async def test_unsupported_method(sqlite_client: httpx.AsyncClient) -> None:
    response = await sqlite_client.put("/graphql", json={"query": "{ __typename }"})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert _codes(response.json()) == ["METHOD_NOT_ALLOWED"]


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
async def test_simple_cross_site_posts_are_refused(
    sqlite_client: httpx.AsyncClient, content_type: str
) -> None:
    """What a browser sends cross-site without a preflight never reaches GraphQL (CSRF)."""
    response = await sqlite_client.post(
        "/graphql",
        content=json.dumps({"query": "{ __typename }"}),
        headers={"Content-Type": content_type},
    )
    assert response.status_code == 400
    assert _codes(response.json()) == ["CSRF_REJECTED"]
    # A non-simple header proves a preflight happened; the endpoint still wants JSON.
    response = await sqlite_client.post(
        "/graphql",
        content=json.dumps({"query": "{ __typename }"}),
        headers={"Content-Type": content_type, "Apollo-Require-Preflight": "true"},
    )
    assert response.status_code == 415
    assert _codes(response.json()) == ["UNSUPPORTED_MEDIA_TYPE"]


async def test_rest_posts_refuse_simple_requests_too(sqlite_client: httpx.AsyncClient) -> None:
    for path in ("/auth/login", "/auth/refresh", "/auth/logout"):
        response = await sqlite_client.post(
            path,
            content="email=a&password=b",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 400, path
        assert response.json()["error"]["code"] == "CSRF_REJECTED", path


async def test_invalid_json_body(sqlite_client: httpx.AsyncClient) -> None:
    response = await sqlite_client.post(
        "/graphql", content='{"query": ', headers={"Content-Type": JSON}
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == JSON
    assert _codes(response.json()) == ["BAD_REQUEST"]


@pytest.mark.parametrize(
    ("accept", "status"), [(GRAPHQL_RESPONSE_JSON, 400), (JSON, 200)], ids=["graphql", "json"]
)
async def test_validation_error_status_follows_media_type(
    sqlite_client: httpx.AsyncClient, accept: str, status: int
) -> None:
    response = await sqlite_client.post(
        "/graphql", json={"query": "{ noSuchField }"}, headers={"Accept": accept}
    )
    assert response.status_code == status
    assert response.headers["content-type"] == accept
    body = response.json()
    assert "data" not in body
    assert _codes(body) == ["GRAPHQL_VALIDATION_FAILED"]


async def test_unacceptable_media_type(sqlite_client: httpx.AsyncClient) -> None:
    response = await sqlite_client.post(
        "/graphql", json={"query": "{ __typename }"}, headers={"Accept": "text/xml"}
    )
    assert response.status_code == 406
    assert _codes(response.json()) == ["NOT_ACCEPTABLE"]


@pytest.mark.parametrize(
    "payload", [{}, {"query": ""}, {"query": None}], ids=["absent", "", "null"]
)
async def test_missing_query(sqlite_client: httpx.AsyncClient, payload: dict[str, Any]) -> None:
    response = await sqlite_client.post("/graphql", json=payload)
    assert response.status_code == 400
    assert _codes(response.json()) == ["BAD_REQUEST"]


async def test_batch(sqlite_client: httpx.AsyncClient) -> None:
    batch = [{"query": "{ __typename }"}, {"query": "query Q { me { id } }", "operationName": "Q"}]
    response = await sqlite_client.post("/graphql", json=batch)
    assert response.status_code == 200
    first, second = response.json()
    assert first == {"data": {"__typename": "Query"}}
    assert "data" not in second, "refused before execution: me needs a signed-in viewer"
    assert _codes(second) == ["UNAUTHENTICATED"]


async def test_batch_over_the_limit(sqlite_client: httpx.AsyncClient) -> None:
    response = await sqlite_client.post("/graphql", json=[{"query": "{ __typename }"}] * 11)
    assert response.status_code == 400
    assert _codes(response.json()) == ["BAD_REQUEST"]


async def test_unknown_operation_name(sqlite_client: httpx.AsyncClient) -> None:
    response = await sqlite_client.post(
        "/graphql", json={"query": "query A { __typename }", "operationName": "B"}
    )
    assert response.status_code == 400
    assert _codes(response.json()) == ["BAD_REQUEST"]


@pytest.mark.parametrize(
    ("accept", "status"), [(GRAPHQL_RESPONSE_JSON, 400), (JSON, 200)], ids=["graphql", "json"]
)
async def test_parse_error(sqlite_client: httpx.AsyncClient, accept: str, status: int) -> None:
    response = await sqlite_client.post(
        "/graphql", json={"query": "{ __typename"}, headers={"Accept": accept}
    )
    assert response.status_code == status
    body = response.json()
    assert "data" not in body
    assert _codes(body) == ["GRAPHQL_PARSE_FAILED"]


@pytest.mark.parametrize("accept", [GRAPHQL_RESPONSE_JSON, JSON])
async def test_execution_error_on_non_null_root_field(
    sqlite_client: httpx.AsyncClient, accept: str
) -> None:
    """Execution began, so `data` is present (null) and the status is 200 either way."""
    response = await sqlite_client.post(
        "/graphql",
        json={"query": "{ tariffs(includeArchived: true) { name } }"},
        headers={"Accept": accept},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == accept
    body = response.json()
    assert body["data"] is None
    assert _codes(body) == ["FORBIDDEN"]
    assert body["errors"][0]["path"] == ["tariffs"]
