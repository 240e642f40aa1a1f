"""Instructions per request: Kabinet's cost on a bench scenario, counted rather than timed.

On a host shared with test suites, CPU milliseconds per request move by 20-40 % from run to
run; the instructions a request executes do not (two runs agree to a few parts in ten
thousand). This runs the app in-process under callgrind (valgrind), on the database
bench/dashboard.py loads (`kabinet_bench`), calls it as an ASGI app with no server and no
socket between the client and it (so uvicorn's share is left out), signs in as that
scenario's viewer, warms up, then counts the instructions of `--requests` requests of the
scenario only (callgrind_control switches the counting on and off around them), and prints
them per request. PostgreSQL's own work is another process's, not counted.

    .venv/bin/python bench/instructions.py [--scenario dashboard|staff] [--requests 20]

Use it to compare two versions of the code on the same database; bench/dashboard.py stays
the measure against the ceiling and the peer.
"""

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.dashboard import (
    SCENARIOS,
    STAFF_VIEWER,
    UNLIMITED,
    Scenario,
    pick_viewer,
)
from bench.harness import database_url
from domains.identity.tokens import generate_signing_key
from gateway.app import create_app
from gateway.demo import DEMO_PASSWORD
from gateway.settings import Settings

WARMUP = 50  # requests before counting: plans, prepared statements and caches are made
_COUNTED = re.compile(r"Collected : (\d+)")
_CHILD = "KABINET_BENCH_INSTRUCTIONS_CHILD"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default="kabinet_bench")
    parser.add_argument("--scenario", choices=[s.name for s in SCENARIOS], default="dashboard")
    parser.add_argument("--requests", type=int, default=20)
    return parser.parse_args(argv)


async def call(app: Any, path: str, body: dict[str, Any], token: str | None) -> tuple[int, bytes]:
    """One POST through the ASGI app: its status and body."""
    raw = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(raw))]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    received = False
    answer: dict[str, Any] = {"status": 0, "body": b""}

    async def receive() -> dict[str, Any]:
        nonlocal received
        if received:
            await asyncio.Event().wait()  # the client never disconnects
        received = True
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return answer["status"], answer["body"]


def _instrument(on: bool) -> None:
    subprocess.run(
        ["callgrind_control", "--instr=on" if on else "--instr=off", str(os.getpid())],
        check=True,
        capture_output=True,
    )


async def count(args: argparse.Namespace, scenario: Scenario) -> None:
    """The child's work, under callgrind: sign in, warm up, count `args.requests`."""
    url = database_url(args.database)
    settings = Settings(
        database_url=url,
        jwt_private_key=generate_signing_key().decode(),
        query_cost_per_user_per_minute=UNLIMITED,
        query_cost_per_ip_per_minute=UNLIMITED,
        worker_in_process=False,
        log_level="warning",
    )
    app = create_app(settings)
    viewer = STAFF_VIEWER if scenario.name == "staff" else await pick_viewer(url)
    try:  # no lifespan, as the tests' in-process clients: the worker is not wanted here
        login = {"email": viewer, "password": DEMO_PASSWORD}
        status, raw = await call(app, "/auth/login", login, None)
        if status != 200:
            raise SystemExit(f"login as {viewer} failed ({status})")
        token = json.loads(raw)["access_token"]
        for _ in range(WARMUP):
            status, raw = await call(app, "/graphql", scenario.body, token)
            if status != 200 or b'"errors"' in raw:
                raise SystemExit(f"{scenario.name}: {status} {raw[:300]!r}")
        _instrument(True)
        for _ in range(args.requests):
            await call(app, "/graphql", scenario.body, token)
        _instrument(False)
    finally:
        await app.state.services.aclose()


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    scenario = next(s for s in SCENARIOS if s.name == args.scenario)
    if os.environ.get(_CHILD):
        asyncio.run(count(args, scenario))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    with tempfile.TemporaryDirectory() as directory:
        argv = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={Path(directory) / 'callgrind.out'}",
            sys.executable,
            __file__,
            *(argv if argv is not None else sys.argv[1:]),
        ]
        done = subprocess.run(
            argv, env={**os.environ, _CHILD: "1"}, capture_output=True, text=True, check=False
        )
    found = _COUNTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"the counted run failed ({done.returncode}): {done.stderr[-2000:]}")
    per_request = int(found[1]) / args.requests
    print(f"{scenario.name}: {per_request / 1e6:.2f} M instructions per request")
    print(f"  {args.requests} requests counted after {WARMUP} uncounted, database {args.database}")


if __name__ == "__main__":
    main()
