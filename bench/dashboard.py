"""Dashboard benchmark: the portal's first screen through the gateway, against its ceiling.

Loads a PostgreSQL database (10,000 customers x 24 invoices by default), starts `kabinet
serve` (one uvicorn worker), signs in as one bulk customer and loads `POST /graphql` with
bench/dashboard.graphql using autocannon; then does the same against bench/ceiling.py, a
plain Starlette endpoint that runs the same SQL through the same domain reads and answers
the same JSON. Prints requests/s, latency, SQL statements per request and the ratio of the
two. Figures only: nothing here asserts a timing.

    .venv/bin/python bench/dashboard.py [--duration 15] [--connections 10] [--rounds 1] [--keep]
"""

import argparse
import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from types import FrameType
from typing import Any, NamedTuple

import asyncpg
import httpx
from sqlalchemy import func, select

from domains.billing.models import Invoice
from domains.customers.models import Customer
from domains.database import Database
from domains.identity.models import User
from domains.identity.tokens import generate_signing_key
from gateway.demo import DEMO_PASSWORD, load_bulk, load_demo
from migrations import upgrade

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
AUTOCANNON = REPO / "node_modules" / ".bin" / "autocannon"
CEILING = BENCH / "ceiling.py"
QUERY = (BENCH / "dashboard.graphql").read_text()
OPERATION = "Dashboard"
PAGE_SIZE = 12  # invoices(first: 12) in the query
HOST = "127.0.0.1"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
UNLIMITED = 10**12  # a rate limit that the run cannot reach
PG_ADMIN_URL = os.environ.get("KABINET_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
_DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


@dataclass(frozen=True, slots=True)
class Figures:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    statements_per_request: float
    cpu_ms_per_request: float  # the server's own CPU time; steadier than req/s on a busy host
    non_2xx: int
    socket_errors: int


@dataclass(frozen=True, slots=True)
class Server:
    """A running server under test and where its dashboard is."""

    name: str
    pid: int
    base: str
    path: str

    @property
    def url(self) -> str:
        return f"{self.base}{self.path}"

    def load_argv(self, args: argparse.Namespace, body_file: Path, token: str) -> list[str]:
        """The measured run's autocannon command line."""
        return autocannon_argv(self.url, body_file, token, args.connections, args.duration)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default="kabinet_bench", help="database name to (re)create")
    parser.add_argument("--customers", type=int, default=10_000, help="bulk customers to load")
    parser.add_argument("--invoices", type=int, default=24, help="invoices per bulk customer")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="reuse the database if an earlier run loaded it with the same sizes",
    )
    parser.add_argument(
        "--skip-load",
        action="store_true",
        help="use the database as it is: no create, migrate or load",
    )
    parser.add_argument(
        "--duration", type=int, default=15, help="measured seconds, per server and round"
    )
    parser.add_argument(
        "--warmup", type=int, default=3, help="warm-up seconds before each measured run"
    )
    parser.add_argument("--connections", type=int, default=10, help="concurrent connections")
    parser.add_argument(
        "--rounds", type=int, default=1, help="measure each server this often, alternating"
    )
    args = parser.parse_args(argv)
    if not _DATABASE_NAME.fullmatch(args.database):
        parser.error("--database must be a lower-case identifier")
    if (
        min(args.customers, args.warmup) < 0
        or min(args.invoices, args.duration, args.connections, args.rounds) < 1
    ):
        parser.error("--customers and --warmup must be >= 0, the other numbers >= 1")
    return args


# -- the database ---------------------------------------------------------------------------


def _load_marker(args: argparse.Namespace) -> str:
    """Written as the database's comment once a load completes; --keep looks for it."""
    return f"kabinet bench: demo + {args.customers} customers x {args.invoices} invoices"


async def prepare_database(args: argparse.Namespace) -> str:
    """The SQLAlchemy URL of a migrated, loaded, analysed database named `args.database`."""
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    url = f"{base}/{args.database}"
    if args.skip_load:
        print(f"database {args.database}: used as it is (--skip-load)")
        return url
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        comment = await admin.fetchval(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
            args.database,
        )
        if args.keep and comment == _load_marker(args):
            print(f"database {args.database}: reused (--keep), migrating to head")
            await asyncio.to_thread(upgrade, url)
            return url
        await admin.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{args.database}"')
    finally:
        await admin.close()
    print(f"database {args.database}: created, migrating")
    await asyncio.to_thread(upgrade, url)
    started = time.perf_counter()
    db = Database(url)
    try:
        await load_demo(db)
        if args.customers:
            print(f"loading {args.customers} customers x {args.invoices} invoices")
            await load_bulk(
                db,
                customers=args.customers,
                invoices_per_customer=args.invoices,
                progress=_progress,
            )
    finally:
        await db.dispose()
    print(f"loaded in {time.perf_counter() - started:.0f} s; analysing")
    conn = await asyncpg.connect(_plain(url))
    try:
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        marker = _load_marker(args).replace("'", "''")
        await admin.execute(f"COMMENT ON DATABASE \"{args.database}\" IS '{marker}'")
    finally:
        await admin.close()
    return url


async def pick_viewer(url: str) -> str:
    """The email of a customer whose page of invoices is full: one with the most invoices.

    Among those, the one in the middle by id, so the pick is the same on every run.
    """
    invoices = func.count(Invoice.id).label("invoices")
    stmt = (
        select(User.email, invoices)
        .join(Customer, Customer.user_id == User.id)
        .join(Invoice, Invoice.customer_id == Customer.id)
        .group_by(User.email, Customer.id)
        .having(invoices >= PAGE_SIZE)
        .order_by(Customer.id)
    )
    db = Database(url)
    try:
        async with db.read() as conn:
            rows = (await conn.execute(stmt)).all()
    finally:
        await db.dispose()
    if not rows:
        raise SystemExit(f"no customer has {PAGE_SIZE} invoices: load the database first")
    most = max(count for _, count in rows)
    emails = [email for email, count in rows if count == most]
    return emails[len(emails) // 2]


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _progress(done: int, total: int) -> None:
    sys.stdout.write(f"\r  {done}/{total}")
    sys.stdout.write("\n" if done >= total else "")
    sys.stdout.flush()


# -- the servers ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def server_env(
    database_url: str, signing_key: bytes, port: int, ttl_seconds: int
) -> dict[str, str]:
    """Settings for both servers; any KABINET_* in the caller's environment is left out.

    The token outlives the run, and the viewer's query budget covers it: the limiter still
    runs on every request, it just never refuses one.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("KABINET_")}
    env.update(
        KABINET_ENV="development",
        KABINET_LOG_LEVEL="warning",
        KABINET_DATABASE_URL=database_url,
        KABINET_JWT_PRIVATE_KEY=signing_key.decode(),
        KABINET_HOST=HOST,
        KABINET_PORT=str(port),
        KABINET_ACCESS_TOKEN_TTL=f"PT{ttl_seconds}S",
        KABINET_QUERY_COST_PER_USER_PER_MINUTE=str(UNLIMITED),
        KABINET_QUERY_COST_PER_IP_PER_MINUTE=str(UNLIMITED),
        # The dashboard is the API's work alone: an in-process relay polling the outbox
        # would keep the statement counter moving, so it never settles between runs.
        KABINET_WORKER_IN_PROCESS="false",
    )
    return env


def start(
    stack: ExitStack,
    name: str,
    argv: list[str],
    path: str,
    database_url: str,
    signing_key: bytes,
    ttl_seconds: int,
) -> Server:
    """Start a server on a free port; `stack` stops it."""
    port = free_port()
    base = f"http://{HOST}:{port}"
    env = server_env(database_url, signing_key, port, ttl_seconds)
    process = stack.enter_context(running(argv, env, base))
    return Server(name, process.pid, base, path)


@contextmanager
def running(
    argv: list[str], env: Mapping[str, str], base: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A server process, ready to serve; stopped (SIGINT, then SIGKILL) however the block ends."""
    process = subprocess.Popen(argv, env=dict(env), cwd=REPO)
    try:
        _wait_ready(process, base)
        yield process
    finally:
        _stop(process)


def _wait_ready(process: subprocess.Popen[bytes], base: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with code {process.returncode} before it was ready")
        try:
            status, _ = http("GET", f"{base}/health/ready")
            if status == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"server not ready after {READY_TIMEOUT:.0f} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def http(
    method: str, url: str, body: Any = None, headers: Mapping[str, str] | None = None
) -> tuple[int, bytes]:
    response = httpx.request(method, url, json=body, headers=headers, timeout=30)
    return response.status_code, response.content


def sign_in(base: str, email: str) -> str:
    status, body = http("POST", f"{base}/auth/login", {"email": email, "password": DEMO_PASSWORD})
    if status != 200:
        raise SystemExit(f"login as {email} failed ({status}): {body.decode()[:300]}")
    return str(json.loads(body)["access_token"])


def fetch_dashboard(url: str, token: str) -> dict[str, Any]:
    """One response, checked: data, no errors, a full page of invoices."""
    status, raw = http(
        "POST",
        url,
        {"query": QUERY, "operationName": OPERATION},
        {"Authorization": f"Bearer {token}"},
    )
    body = json.loads(raw)
    if status != 200 or body.get("errors") or not body.get("data"):
        raise SystemExit(f"{url} answered {status}: {raw.decode()[:500]}")
    edges = body["data"]["me"]["customer"]["invoices"]["edges"]
    if len(edges) != PAGE_SIZE:
        raise SystemExit(f"{url}: {len(edges)} invoices, expected a full page of {PAGE_SIZE}")
    return dict(body)


class Counters(NamedTuple):
    statements: float  # SQL statements sent
    requests: float  # requests answered on the dashboard's path
    cpu_seconds: float  # the server process's CPU time, user and system


def settled_counters(server: Server) -> Counters:
    """The counters once requests still in flight after a load run have finished."""
    last = read_counters(server)
    while True:
        time.sleep(0.2)
        current = read_counters(server)
        if current[:2] == last[:2]:
            return current
        last = current


def read_counters(server: Server) -> Counters:
    status, raw = http("GET", f"{server.base}/metrics")
    if status != 200:
        raise SystemExit(f"{server.base}/metrics answered {status}")
    statements = requests = 0.0
    for line in raw.decode().splitlines():
        if line.startswith("kabinet_db_statements_total "):
            statements = float(line.split()[-1])
        elif line.startswith("kabinet_http_requests_total{") and f'route="{server.path}"' in line:
            requests += float(line.split()[-1])
    return Counters(statements, requests, cpu_seconds(server.pid))


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (Linux /proc; NaN elsewhere)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


# -- load -----------------------------------------------------------------------------------


def autocannon_argv(
    url: str, body_file: Path, token: str, connections: int, seconds: int
) -> list[str]:
    return [
        str(AUTOCANNON),
        "--json",
        "--connections",
        str(connections),
        "--duration",
        str(seconds),
        "--method",
        "POST",
        "--headers",
        "Content-Type=application/json",
        "--headers",
        f"Authorization=Bearer {token}",
        "--input",
        str(body_file),
        url,
    ]


def autocannon(argv: list[str]) -> dict[str, Any]:
    done = subprocess.run(argv, capture_output=True, check=False, text=True)
    if done.returncode != 0:
        raise SystemExit(f"autocannon failed ({done.returncode}): {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def measure(server: Server, args: argparse.Namespace, body_file: Path, token: str) -> Figures:
    """A warm-up run, then the measured run, with the server's counters read around it."""
    if args.warmup:
        autocannon(autocannon_argv(server.url, body_file, token, args.connections, args.warmup))
    before = settled_counters(server)
    result = autocannon(server.load_argv(args, body_file, token))
    after = settled_counters(server)
    statements, requests, cpu = (a - b for a, b in zip(after, before, strict=True))
    return Figures(
        requests_per_second=float(result["requests"]["average"]),
        p50_ms=float(result["latency"]["p50"]),
        p99_ms=float(result["latency"]["p99"]),
        statements_per_request=statements / requests if requests else float("nan"),
        cpu_ms_per_request=1000 * cpu / requests if requests else float("nan"),
        non_2xx=int(result["non2xx"]),
        socket_errors=int(result["errors"]) + int(result["timeouts"]),
    )


def median_figures(runs: Sequence[Figures]) -> Figures:
    """Each column's median over the rounds; error counts are summed."""
    return Figures(
        requests_per_second=median(f.requests_per_second for f in runs),
        p50_ms=median(f.p50_ms for f in runs),
        p99_ms=median(f.p99_ms for f in runs),
        statements_per_request=median(f.statements_per_request for f in runs),
        cpu_ms_per_request=median(f.cpu_ms_per_request for f in runs),
        non_2xx=sum(f.non_2xx for f in runs),
        socket_errors=sum(f.socket_errors for f in runs),
    )


def report(runs: Mapping[str, Sequence[Figures]]) -> None:
    columns = ("req/s", "p50 ms", "p99 ms", "SQL/req", "CPU ms/req", "non-2xx")
    print("\n" + f"{'':<8}" + "".join(f"{c:>12}" for c in columns))
    for name, figures in runs.items():
        f = median_figures(figures)
        errors = f"  ({f.socket_errors} socket errors/timeouts)" if f.socket_errors else ""
        print(
            f"{name:<8}{f.requests_per_second:>12.1f}{f.p50_ms:>12.1f}{f.p99_ms:>12.1f}"
            f"{f.statements_per_request:>12.2f}{f.cpu_ms_per_request:>12.1f}{f.non_2xx:>12d}"
            + errors
        )
    ours, ceiling = (median_figures(figures) for figures in runs.values())
    print(
        f"\nours/ceiling = {100 * ours.requests_per_second / ceiling.requests_per_second:.1f}%"
        f"  (by server CPU per request: "
        f"{100 * ceiling.cpu_ms_per_request / ours.cpu_ms_per_request:.1f}%)"
    )
    rounds = list(zip(*runs.values(), strict=True))
    if len(rounds) > 1:
        ratios = ", ".join(
            f"{100 * o.requests_per_second / c.requests_per_second:.1f}%" for o, c in rounds
        )
        print(f"medians of {len(rounds)} rounds; ours/ceiling by round: {ratios}")


def _raise_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)  # the servers are stopped on kill too
    database_url = asyncio.run(prepare_database(args))
    email = asyncio.run(pick_viewer(database_url))
    print(f"viewer: {email}")
    signing_key = generate_signing_key()
    ttl = 3600 + 2 * args.rounds * (args.warmup + args.duration)
    kabinet = shutil.which("kabinet", path=str(Path(sys.executable).parent)) or "kabinet"
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kabinet-bench-")))
        body_file = tmp / "dashboard.json"
        body_file.write_text(json.dumps({"query": QUERY, "operationName": OPERATION}))
        # Both run from the start; the one not under load sits idle.
        servers = [
            start(stack, "ours", [kabinet, "serve"], "/graphql", database_url, signing_key, ttl),
            start(
                stack,
                "ceiling",
                [sys.executable, str(CEILING)],
                "/dashboard",
                database_url,
                signing_key,
                ttl,
            ),
        ]
        token = sign_in(servers[0].base, email)
        expected = fetch_dashboard(servers[0].url, token)
        if fetch_dashboard(servers[1].url, token) != expected:
            raise SystemExit("the ceiling's response differs from the gateway's")
        runs: dict[str, list[Figures]] = {server.name: [] for server in servers}
        for round_no in range(1, args.rounds + 1):
            for server in servers:
                print(
                    f"round {round_no}/{args.rounds}, {server.name}: "
                    f"{args.warmup} s warm-up, {args.duration} s measured"
                )
                runs[server.name].append(measure(server, args, body_file, token))
        commands = {s.name: shlex.join(s.load_argv(args, body_file, "$TOKEN")) for s in servers}
    report(runs)
    print(f"\ncommand: {shlex.join(sys.orig_argv)}")
    for name, command in commands.items():
        print(f"load ({name}): {command}")
    print(
        f'  {body_file.name}: {{"query": <bench/dashboard.graphql>, "operationName": '
        f'"{OPERATION}"}}; $TOKEN: an access token of {email}'
    )


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
