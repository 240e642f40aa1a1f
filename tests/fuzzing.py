"""What the fuzz tests share: how many examples, and a demo server to aim them at.

`KABINET_FUZZ_EXAMPLES` sets the examples per operation (or per viewer's GraphQL run);
`make test` keeps the default small, `make fuzz` raises it.
"""

import os
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from hypothesis import HealthCheck, settings
from starlette.applications import Starlette

from gateway.app import create_app
from tests.conftest import load_demo_into, make_settings, migrated_database
from tests.servers import NO_LIMIT, free_socket, serve

EXAMPLES = int(os.environ.get("KABINET_FUZZ_EXAMPLES", "25"))

# No deadline (a shared machine is slow at times; tests never assert timings) and no
# example database: each run explores afresh, and a failure prints its example to replay.
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)

# The server's budgets are the fuzzer's to spend: a 429 would hide what lies behind it.
UNLIMITED = {
    name: int(NO_LIMIT)
    for name in (
        "login_attempts_per_account",
        "login_attempts_per_account_and_ip",
        "login_attempts_per_ip",
        "mutations_per_user_per_minute",
        "mutations_per_ip_per_minute",
        "query_cost_per_user_per_minute",
        "query_cost_per_ip_per_minute",
    )
}


@asynccontextmanager
async def demo_database(prefix: str) -> AsyncIterator[str]:
    """A PostgreSQL database of the fuzzer's own with the demo data: it pays and signs out."""
    async with migrated_database(prefix) as url:
        await load_demo_into(url)
        yield url


@contextmanager
def demo_server(
    database_url: str, signing_key: bytes, sock: socket.socket | None = None, **overrides: object
) -> Iterator[str]:
    """The whole app under uvicorn (on `sock`, or a free port); yields its base URL."""
    app: Starlette = create_app(
        make_settings(database_url, signing_key, worker_in_process=False, **UNLIMITED, **overrides)
    )
    with serve(app, sock or free_socket()) as url:
        yield url
