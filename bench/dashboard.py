"""Dashboard benchmark: Kabinet against the floor Python can reach and a Node GraphQL peer.

Loads a PostgreSQL database (10,000 customers x 24 invoices by default) and starts three
servers, one process each, on free ports, with the same signing key and database:

- **kabinet**: `kabinet serve` (one uvicorn worker, no in-process worker);
- **ceiling**: bench/ceiling.py, plain Starlette on raw asyncpg (its own pool, prepared
  statements), the same statements and the same JSON, no GraphQL: the floor Python can reach;
- **peer**: bench/peer/server.mjs on the system Node, graphql-yoga + DataLoader + pg with the
  schema subset the two queries select, the same statements, the same JSON, the same Ed25519
  access-token check (`npm ci` installs its packages; `make test` runs it).

Two scenarios, each `POST /graphql` on all three: **dashboard** (bench/dashboard.graphql, as
the bulk customer with the most invoices) and **staff** (bench/staff_customers.graphql, 50
customers with their last 3 invoices, as operator@example.com). Before measuring, one
answer of each server per scenario is compared with Kabinet's after parsing; if any differs,
the run stops and prints no figures. Then, per scenario and round, the servers take turns:
a warm-up and a measured autocannon run each (10 connections, 15 s by default), every answer
compared with the checked body (`--expectBody`), so a non-2xx, a GraphQL error or any other
answer counts as a failure.

Prints, per scenario: req/s, p50 and p99 latency, the server process's CPU ms per request
(/proc), SQL statements per request (each server's `kabinet_db_statements_total` counter on
/metrics), failures and RSS after the run; then the ratios the issue's targets use: Kabinet's
CPU per request over the peer's, and Kabinet's req/s over the ceiling's. Medians over the
rounds. Figures only: nothing here asserts a timing.

    .venv/bin/python bench/dashboard.py --skip-load --rounds 3       # the reference run
    .venv/bin/python bench/dashboard.py [--scenario dashboard|staff|all] [--duration 15]
        [--warmup 3] [--connections 10] [--rounds 1] [--keep | --skip-load]

`--skip-load` uses the database `--database` names as it is (kabinet_bench, once loaded);
`--keep` reuses it if an earlier run loaded the same sizes; otherwise it is recreated.
"""

import argparse
import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import profile
from bench.harness import ADMIN_URL, cpu_seconds, database_url, free_port

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
AUTOCANNON = REPO / "node_modules" / ".bin" / "autocannon"
CEILING = BENCH / "ceiling.py"
PEER = BENCH / "peer" / "server.mjs"
PATH = "/graphql"  # every server answers both scenarios here
PAGE_SIZE = 12  # invoices(first: 12) in bench/dashboard.graphql
STAFF_PAGE = 50  # customers(first: 50) in bench/staff_customers.graphql
STAFF_VIEWER = "operator@example.com"  # a demo staff login (gateway.demo.DEMO_LOGINS)
HOST = "127.0.0.1"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
UNLIMITED = 10**12  # a rate limit that the run cannot reach
_DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _full_dashboard(data: dict[str, Any]) -> str | None:
    edges = data["me"]["customer"]["invoices"]["edges"]
    return None if len(edges) == PAGE_SIZE else f"{len(edges)} invoices, not {PAGE_SIZE}"


def _full_staff_page(data: dict[str, Any]) -> str | None:
    edges = data["customers"]["edges"]
    return None if len(edges) == STAFF_PAGE else f"{len(edges)} customers, not {STAFF_PAGE}"


@dataclass(frozen=True, slots=True)
class Scenario:
    """One operation, whom it runs as, and what a complete answer holds."""

    name: str
    query_file: Path
    operation: str
    incomplete: Callable[[dict[str, Any]], str | None]  # what is missing from the data

    @property
    def body(self) -> dict[str, str]:
        return {"query": self.query_file.read_text(), "operationName": self.operation}


SCENARIOS = (
    Scenario("dashboard", BENCH / "dashboard.graphql", "Dashboard", _full_dashboard),
    Scenario("staff", BENCH / "staff_customers.graphql", "StaffCustomers", _full_staff_page),
)


@dataclass(frozen=True, slots=True)
class Figures:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    statements_per_request: float
    cpu_ms_per_request: float  # the server's own CPU time; steadier than req/s on a busy host
    failures: int  # non-2xx, socket errors, timeouts and answers unlike the checked one
    rss_mb: float  # the server's resident memory after the run


@dataclass(frozen=True, slots=True)
class Server:
    """A running server under test."""

    name: str
    pid: int
    base: str

    @property
    def url(self) -> str:
        return f"{self.base}{PATH}"


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
        "--scenario",
        choices=[*(s.name for s in SCENARIOS), "all"],
        default="all",
        help="which scenario to measure",
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
    parser.add_argument(
        "--profile",
        metavar="DIR",
        type=Path,
        help="after the rounds, one more Kabinet run per scenario under py-spy, its CPU by "
        "layer printed and the raw recording kept in DIR",
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
    url = database_url(args.database)
    if args.skip_load:
        print(f"database {args.database}: used as it is (--skip-load)")
        return url
    admin = await asyncpg.connect(ADMIN_URL)
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
    admin = await asyncpg.connect(ADMIN_URL)
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
        async with db.connect() as conn:
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


def server_env(
    database_url: str, signing_key: bytes, port: int, ttl_seconds: int
) -> dict[str, str]:
    """Settings for every server; any KABINET_* in the caller's environment is left out.

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


def server_commands() -> dict[str, list[str]]:
    """The three servers by name, Kabinet first: the others' answers are compared with its."""
    kabinet = shutil.which("kabinet", path=str(Path(sys.executable).parent)) or "kabinet"
    return {
        "kabinet": [kabinet, "serve"],
        "ceiling": [sys.executable, str(CEILING)],
        "peer": [shutil.which("node") or "node", str(PEER)],
    }


def start(
    stack: ExitStack,
    name: str,
    argv: list[str],
    database_url: str,
    signing_key: bytes,
    ttl_seconds: int,
) -> Server:
    """Start a server on a free port; `stack` stops it."""
    port = free_port()
    base = f"http://{HOST}:{port}"
    env = server_env(database_url, signing_key, port, ttl_seconds)
    process = stack.enter_context(running(argv, env, base))
    return Server(name, process.pid, base)


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


def answer(server: Server, scenario: Scenario, token: str) -> tuple[bytes, Any]:
    """One answer, raw and parsed, checked: HTTP 200, data, no errors, a full page."""
    status, raw = http("POST", server.url, scenario.body, {"Authorization": f"Bearer {token}"})
    where = f"{server.name} ({scenario.name})"
    try:
        body = json.loads(raw)
    except ValueError:
        raise SystemExit(f"{where} answered {status} with no JSON: {raw[:300]!r}") from None
    if status != 200 or body.get("errors") or not body.get("data"):
        raise SystemExit(f"{where} answered {status}: {raw.decode()[:500]}")
    if missing := scenario.incomplete(body["data"]):
        raise SystemExit(f"{where}: {missing}")
    return raw, body


def first_difference(expected: Any, found: Any, path: str = "") -> str | None:
    """Where two parsed JSON values first differ (objects compared by key, not order)."""
    if isinstance(expected, dict) and isinstance(found, dict):
        for key in sorted(expected.keys() | found.keys()):
            if key not in expected or key not in found:
                return f"{path}.{key}: only in one"
            if where := first_difference(expected[key], found[key], f"{path}.{key}"):
                return where
        return None
    if isinstance(expected, list) and isinstance(found, list):
        if len(expected) != len(found):
            return f"{path}: {len(expected)} items, not {len(found)}"
        for i, (e, f) in enumerate(zip(expected, found, strict=True)):
            if where := first_difference(e, f, f"{path}[{i}]"):
                return where
        return None
    return None if expected == found else f"{path}: {expected!r}, not {found!r}"


def checked_answers(servers: Sequence[Server], scenario: Scenario, token: str) -> dict[str, bytes]:
    """Each server's raw answer, once all of them equal Kabinet's; the run stops otherwise."""
    answers = [answer(s, scenario, token) for s in servers]
    expected = answers[0][1]
    for server, (_raw, found) in zip(servers[1:], answers[1:], strict=True):
        if where := first_difference(expected, found):
            raise SystemExit(
                f"{scenario.name}: {server.name}'s JSON differs from {servers[0].name}'s at "
                f"{where}; no figures"
            )
    return {s.name: raw for s, (raw, _) in zip(servers, answers, strict=True)}


class Counters(NamedTuple):
    statements: float  # SQL statements sent
    requests: float  # requests answered on /graphql
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
        elif line.startswith("kabinet_http_requests_total{") and f'route="{PATH}"' in line:
            requests += float(line.split()[-1])
    return Counters(statements, requests, cpu_seconds(server.pid))


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (Linux /proc; NaN elsewhere)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return float("nan")
    kilobytes = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))
    return int(kilobytes) / 1024


# -- load -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Load:
    """One autocannon run's request: where, as whom, and the answer every response must be."""

    url: str
    body_file: Path
    token: str
    expected: str

    def argv(self, connections: int, seconds: int, *, shown: bool = False) -> list[str]:
        token, expected = ("$TOKEN", "$EXPECTED") if shown else (self.token, self.expected)
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
            str(self.body_file),
            "--expectBody",
            expected,
            self.url,
        ]


def autocannon(argv: list[str]) -> dict[str, Any]:
    done = subprocess.run(argv, capture_output=True, check=False, text=True)
    if done.returncode != 0:
        raise SystemExit(f"autocannon failed ({done.returncode}): {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def measure(server: Server, load: Load, args: argparse.Namespace) -> Figures:
    """A warm-up run, then the measured run, with the server's counters read around it."""
    if args.warmup:
        autocannon(load.argv(args.connections, args.warmup))
    before = settled_counters(server)
    result = autocannon(load.argv(args.connections, args.duration))
    after = settled_counters(server)
    statements, requests, cpu = (a - b for a, b in zip(after, before, strict=True))
    # A non-2xx answer's body differs from the checked one, so mismatches count it too;
    # errors are the requests that got no answer (timeouts included).
    failures = int(result["mismatches"]) + int(result["errors"])
    return Figures(
        requests_per_second=float(result["requests"]["average"]),
        p50_ms=float(result["latency"]["p50"]),
        p99_ms=float(result["latency"]["p99"]),
        statements_per_request=statements / requests if requests else float("nan"),
        cpu_ms_per_request=1000 * cpu / requests if requests else float("nan"),
        failures=failures,
        rss_mb=rss_mb(server.pid),
    )


def profiled(server: Server, load: Load, scenario: Scenario, args: argparse.Namespace) -> list[str]:
    """One more run of `load` with py-spy sampling the server; its summary by layer."""
    if args.warmup:
        autocannon(load.argv(args.connections, args.warmup))
    args.profile.mkdir(parents=True, exist_ok=True)
    raw = args.profile / f"{server.name}-{scenario.name}.txt"
    sampler = profile.record(server.pid, args.duration, raw)
    autocannon(load.argv(args.connections, args.duration))
    sampler.wait()
    return profile.summarize(raw)


def median_figures(runs: Sequence[Figures]) -> Figures:
    """Each column's median over the rounds; failures are summed, RSS is the last run's."""
    return Figures(
        requests_per_second=median(f.requests_per_second for f in runs),
        p50_ms=median(f.p50_ms for f in runs),
        p99_ms=median(f.p99_ms for f in runs),
        statements_per_request=median(f.statements_per_request for f in runs),
        cpu_ms_per_request=median(f.cpu_ms_per_request for f in runs),
        failures=sum(f.failures for f in runs),
        rss_mb=runs[-1].rss_mb,
    )


def report(scenario: Scenario, viewer: str, runs: Mapping[str, Sequence[Figures]]) -> None:
    rounds = len(next(iter(runs.values())))
    print(
        f"\n{scenario.name}: {scenario.query_file.relative_to(REPO)} as {viewer}, "
        f"medians of {rounds} round{'s' if rounds > 1 else ''}"
    )
    columns = ("req/s", "p50 ms", "p99 ms", "CPU ms/req", "SQL/req", "failed", "RSS MB")
    print(f"{'server':<10}" + "".join(f"{c:>12}" for c in columns))
    medians = {name: median_figures(figures) for name, figures in runs.items()}
    for name, f in medians.items():
        print(
            f"{name:<10}{f.requests_per_second:>12.1f}{f.p50_ms:>12.1f}{f.p99_ms:>12.1f}"
            f"{f.cpu_ms_per_request:>12.2f}{f.statements_per_request:>12.2f}{f.failures:>12d}"
            f"{f.rss_mb:>12.0f}"
        )
    kabinet, ceiling, peer = (runs[name] for name in ("kabinet", "ceiling", "peer"))
    cpu = [k.cpu_ms_per_request / p.cpu_ms_per_request for k, p in zip(kabinet, peer, strict=True)]
    rps = [
        k.requests_per_second / c.requests_per_second for k, c in zip(kabinet, ceiling, strict=True)
    ]
    m = medians
    print(
        f"kabinet CPU/req / peer's  = "
        f"{m['kabinet'].cpu_ms_per_request / m['peer'].cpu_ms_per_request:.2f}x"
        f"  (target <= 1.00x; by round: {', '.join(f'{r:.2f}x' for r in cpu)})"
    )
    print(
        f"kabinet req/s / ceiling's = "
        f"{100 * m['kabinet'].requests_per_second / m['ceiling'].requests_per_second:.1f}%"
        f"  (target >= 50%; by round: {', '.join(f'{100 * r:.1f}%' for r in rps)})"
    )
    if failed := sum(f.failures for f in m.values()):
        print(f"WARNING: {failed} failed requests: these figures do not count")


def _raise_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)  # the servers are stopped on kill too
    scenarios = [s for s in SCENARIOS if args.scenario in (s.name, "all")]
    database_url = asyncio.run(prepare_database(args))
    viewers = {"dashboard": asyncio.run(pick_viewer(database_url)), "staff": STAFF_VIEWER}
    signing_key = generate_signing_key()
    runs_per_scenario = len(scenarios) * 3 * args.rounds
    ttl = 3600 + runs_per_scenario * (args.warmup + args.duration)
    commands = server_commands()
    results: list[tuple[Scenario, dict[str, list[Figures]]]] = []
    profiles: dict[str, list[str]] = {}
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kabinet-bench-")))
        # All run from the start; the ones not under load sit idle.
        servers = [
            start(stack, name, argv, database_url, signing_key, ttl)
            for name, argv in commands.items()
        ]
        tokens = {s.name: sign_in(servers[0].base, viewers[s.name]) for s in scenarios}
        loads: dict[str, dict[str, Load]] = {}
        for scenario in scenarios:  # every answer is checked before anything is measured
            body_file = tmp / f"{scenario.name}.json"
            body_file.write_text(json.dumps(scenario.body))
            answers = checked_answers(servers, scenario, tokens[scenario.name])
            loads[scenario.name] = {
                s.name: Load(s.url, body_file, tokens[scenario.name], answers[s.name].decode())
                for s in servers
            }
            print(f"{scenario.name}: the three servers' JSON is equal")
        for scenario in scenarios:
            runs: dict[str, list[Figures]] = {server.name: [] for server in servers}
            for round_no in range(1, args.rounds + 1):
                for server in servers:
                    print(
                        f"{scenario.name}, round {round_no}/{args.rounds}, {server.name}: "
                        f"{args.warmup} s warm-up, {args.duration} s measured"
                    )
                    load = loads[scenario.name][server.name]
                    runs[server.name].append(measure(server, load, args))
            if args.profile:
                print(f"{scenario.name}, kabinet under py-spy: {args.duration} s, not counted")
                kabinet = loads[scenario.name]["kabinet"]
                profiles[scenario.name] = profiled(servers[0], kabinet, scenario, args)
            results.append((scenario, runs))
    for scenario, runs in results:
        report(scenario, viewers[scenario.name], runs)
        if scenario.name in profiles:
            raw = args.profile / f"kabinet-{scenario.name}.txt"
            print(f"where kabinet's CPU goes ({scenario.name}, py-spy, recording in {raw}):")
            print("\n".join(f"  {line}" for line in profiles[scenario.name]))
    print(f"\ncommand: {shlex.join(sys.orig_argv)}")
    version = subprocess.run([commands["peer"][0], "--version"], capture_output=True, text=True)
    print(f"node: {version.stdout.strip()}")
    example = next(iter(loads.values()))["kabinet"].argv(
        args.connections, args.duration, shown=True
    )
    print(f"load, per server and scenario: {shlex.join(example)}")
    print(
        '  <scenario>.json: {"query": <its .graphql>, "operationName": <its operation>}; '
        "$TOKEN: the viewer's access token; $EXPECTED: that server's checked answer"
    )
    for name, argv in commands.items():
        print(f"server ({name}): {shlex.join(argv)}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
