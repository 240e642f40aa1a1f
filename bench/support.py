"""Support benchmark: opening tickets over HTTP with 50 operators online, on PostgreSQL.

Creates the PostgreSQL database `kabinet_bench_support` (drops it first), migrates it,
loads bulk customers (`load_bulk`) and `--operators` support operators, online, handling
every category, `--capacity` tickets each. Then, side by side:

1. HTTP (left out with `--direct`): starts `kabinet serve` (one uvicorn worker, Redis for
   the limits, raised so the run cannot hit them), signs in `--signed-in` customers, and
   for `--duration` seconds `--concurrency` clients fire the `createTicket` mutation, each
   as a random one of them. Prints tickets/s, failed requests, request latency p50/p99,
   the server process's CPU ms per ticket.
2. Direct: `--requests` tickets through the domain action itself (no HTTP),
   `--concurrency` at a time: what the transaction costs without the API around it.

After each, from the database: the assignment latency p50/p99, from a ticket's created_at
(the action's start) to the time of its `ticket.assigned` event, recorded just before the
same transaction commits (the answer, which carries the assignee, arrives after the
commit: the request latency bounds it from above); how many tickets were assigned or
queued; the most open tickets any operator held against their capacity (never above it),
and a check that each operator's count is the tickets they hold.

    .venv/bin/python bench/support.py [--duration 20] [--concurrency 20] [--operators 50]
        [--capacity 1000] [--signed-in 200] [--requests 3000]
    .venv/bin/python bench/support.py --direct [--requests 3000]
"""

import argparse
import asyncio
import itertools
import os
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import func, insert, select, update

from domains.clock import utcnow
from domains.customers.models import Customer
from domains.database import Database
from domains.errors import DomainError
from domains.identity.models import Role, Session, User
from domains.identity.tokens import generate_signing_key
from domains.identity.viewer import Viewer
from domains.outbox import OutboxEvent
from domains.support.models import (
    ACTIVE_STATUSES,
    Presence,
    SupportOperator,
    SupportOperatorSkill,
    Ticket,
    TicketCategory,
    TicketChannel,
    TicketStatus,
)
from domains.support.ticket_create import create_ticket
from gateway.demo import load_bulk

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import cpu_seconds, database_url, free_port, fresh_database, wait_ready

NAME = "kabinet_bench_support"
URL = database_url(NAME)
REDIS_URL = os.environ.get("KABINET_BENCH_REDIS", "redis://127.0.0.1:6379/0")
REPO = Path(__file__).resolve().parent.parent
PASSWORD = "kabinet-demo"  # noqa: S105 - load_bulk's documented password
UNLIMITED = 1_000_000_000
OUTBOX = OutboxEvent.__table__
CATEGORIES = list(TicketCategory)
CREATE = """mutation($input: CreateTicketInput!) {
  createTicket(input: $input) { id priority status } }"""


async def customers(db: Database) -> list[tuple[Viewer, str]]:
    async with db.connect() as conn:
        rows = await conn.execute(
            select(Customer.user_id, Customer.id, User.email)
            .join(User, User.id == Customer.user_id)
            .order_by(Customer.id)
        )
        return [(Viewer(user, Role.CUSTOMER, customer), email) for user, customer, email in rows]


async def add_operators(db: Database, count: int, capacity: int) -> None:
    now = utcnow()
    async with db.transaction() as session:
        ids = (
            await session.execute(
                insert(User).returning(User.id),
                [
                    {
                        "email": f"bench-operator-{n}@support.test",
                        "role": Role.OPERATOR,
                        "is_active": True,
                        "password_hash": "x",
                        "created_at": now,
                    }
                    for n in range(count)
                ],
            )
        ).scalars()
        ids = list(ids)
        await session.execute(
            insert(SupportOperator),
            [
                {
                    "user_id": user_id,
                    "presence": Presence.ONLINE,
                    "capacity": capacity,
                    "open_tickets": 0,
                    "presence_changed_at": now,
                }
                for user_id in ids
            ],
        )
        await session.execute(
            insert(SupportOperatorSkill),
            [{"user_id": user_id, "category": c} for user_id in ids for c in CATEGORIES],
        )
        # Signed in, as an operator at work is: presence follows sessions, and the server's
        # worker takes an operator with none offline.
        await session.execute(
            insert(Session),
            [
                {
                    "user_id": user_id,
                    "created_at": now,
                    "last_seen_at": now,
                    "expires_at": now + timedelta(days=1),
                }
                for user_id in ids
            ],
        )


async def reset(db: Database) -> None:
    """Between the runs: every ticket closed, every operator's slots free again."""
    async with db.transaction() as session:
        await session.execute(
            update(Ticket)
            .where(Ticket.status.in_(ACTIVE_STATUSES))
            .values(status=TicketStatus.CLOSED)
        )
        await session.execute(update(SupportOperator).values(open_tickets=0))


def _body(n: int) -> dict[str, str]:
    return {
        "category": CATEGORIES[n % len(CATEGORIES)],
        "subject": f"Bench ticket {n}",
        "body": "The connection drops every evening since Monday.",
    }


async def direct(db: Database, people: list[tuple[Viewer, str]], args: argparse.Namespace) -> None:
    plan = iter(enumerate(itertools.islice(itertools.cycle(people), args.requests)))
    outcomes: Counter[str] = Counter()

    async def opening() -> None:
        for n, (viewer, _email) in plan:
            try:
                await create_ticket(db, viewer, channel=TicketChannel.WEB, **_body(n))
                outcomes["created"] += 1
            except DomainError as error:
                outcomes[error.code] += 1

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(opening() for _ in range(args.concurrency)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(
        f"direct, {args.requests} tickets, concurrency {args.concurrency}: {elapsed:.2f} s, "
        f"{outcomes['created'] / elapsed:.0f} tickets/s, "
        f"{cpu * 1000 / max(outcomes['created'], 1):.2f} ms CPU per ticket (this process), "
        f"outcomes {dict(outcomes)}"
    )


def start_server(port: int) -> subprocess.Popen[bytes]:
    """`kabinet serve`, one worker, limits out of reach; KABINET_* of the caller left out."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("KABINET_")}
    env |= {
        "KABINET_LOG_LEVEL": "warning",
        "KABINET_DATABASE_URL": URL,
        "KABINET_REDIS_URL": REDIS_URL,
        "KABINET_JWT_PRIVATE_KEY": generate_signing_key().decode(),
        "KABINET_PORT": str(port),
        "KABINET_MUTATIONS_PER_USER_PER_MINUTE": str(UNLIMITED),
        "KABINET_MUTATIONS_PER_IP_PER_MINUTE": str(UNLIMITED),
        "KABINET_LOGIN_ATTEMPTS_PER_IP": str(UNLIMITED),
    }
    return subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve"], env=env, cwd=REPO)


async def over_http(people: list[tuple[Viewer, str]], args: argparse.Namespace) -> None:
    chosen = people[: args.signed_in]
    port = free_port()
    server = start_server(port)
    limits = httpx.Limits(max_connections=args.concurrency)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30
        ) as http:
            await wait_ready(str(http.base_url), lambda: server.poll() is not None)
            tokens = []
            for _viewer, email in chosen:
                response = await http.post(
                    "/auth/login", json={"email": email, "password": PASSWORD}
                )
                response.raise_for_status()
                tokens.append(response.json()["access_token"])
            print(f"{len(tokens)} customers signed in; firing for {args.duration} s")
            latencies: list[float] = []
            outcomes: Counter[str] = Counter()
            stop = time.monotonic() + args.duration
            numbers = itertools.count()

            async def client() -> None:
                while time.monotonic() < stop:
                    n = next(numbers)
                    body = _body(n)
                    body["category"] = body["category"].upper()
                    sent = time.perf_counter()
                    response = await http.post(
                        "/graphql",
                        json={"query": CREATE, "variables": {"input": body}},
                        headers={"Authorization": f"Bearer {random.choice(tokens)}"},
                    )
                    latencies.append(time.perf_counter() - sent)
                    answer = response.json() if response.status_code == 200 else {}
                    if answer.get("data", {}).get("createTicket"):
                        outcomes["created"] += 1
                    else:
                        outcomes[f"{response.status_code} {answer.get('errors', '')!s:.60}"] += 1

            started, cpu = time.perf_counter(), cpu_seconds(server.pid)
            await asyncio.gather(*(client() for _ in range(args.concurrency)))
            elapsed, cpu = time.perf_counter() - started, cpu_seconds(server.pid) - cpu
    finally:
        server.terminate()
        server.wait(10)
    quantiles = statistics.quantiles(latencies, n=100)
    created = outcomes.pop("created", 0)
    print(
        f"HTTP, concurrency {args.concurrency}, {elapsed:.1f} s: {len(latencies)} requests, "
        f"{created / elapsed:.0f} tickets/s, {len(latencies) - created} failed, "
        f"request p50 {quantiles[49] * 1000:.1f} ms, p99 {quantiles[98] * 1000:.1f} ms, "
        f"{cpu * 1000 / max(created, 1):.2f} ms server CPU per ticket"
    )
    if outcomes:
        print("failures:", dict(outcomes))


async def assignment_figures(db: Database, label: str) -> None:
    """What the database holds after a run: assignment latency, assigned and queued, load."""
    async with db.connect() as conn:
        opened = (
            await conn.execute(
                select(Ticket.created_at, Ticket.assignee_id).where(
                    Ticket.status.in_(ACTIVE_STATUSES)
                )
            )
        ).all()
        # From the action's start to its assignment's event, just before the commit.
        spans = (
            await conn.execute(
                select(func.extract("epoch", func.min(OUTBOX.c.occurred_at) - Ticket.created_at))
                .select_from(Ticket)
                .join(
                    OUTBOX,
                    (OUTBOX.c.type == "ticket.assigned")
                    & (OUTBOX.c.payload["ticket_id"].as_integer() == Ticket.id),
                )
                .where(Ticket.status.in_(ACTIVE_STATUSES))
                .group_by(Ticket.id, Ticket.created_at)
            )
        ).scalars()
        loads = (
            await conn.execute(
                select(
                    SupportOperator.user_id, SupportOperator.open_tickets, SupportOperator.capacity
                )
            )
        ).all()
        held = dict(
            (
                await conn.execute(
                    select(Ticket.assignee_id, func.count())
                    .where(Ticket.status.in_(ACTIVE_STATUSES), Ticket.assignee_id.isnot(None))
                    .group_by(Ticket.assignee_id)
                )
            ).all()
        )
    spans = sorted(float(span) for span in spans)
    assigned = sum(1 for _created, assignee in opened if assignee is not None)
    fullest = max(loads, key=lambda load: load[1] / load[2])
    over = [user for user, count, capacity in loads if count > capacity]
    wrong = [user for user, count, _ in loads if count != held.get(user, 0)]
    if spans:
        quantiles = statistics.quantiles(spans, n=100) if len(spans) > 1 else spans * 99
        p50, p99 = quantiles[49] * 1000, quantiles[98] * 1000
        timing = f"created -> assigned p50 {p50:.2f} ms, p99 {p99:.2f} ms"
    else:
        timing = "nothing assigned"
    print(
        f"{label}: {assigned} assigned, {len(opened) - assigned} queued; {timing} "
        f"(in the transaction); most held {fullest[1]} of capacity {fullest[2]}; "
        f"operators over capacity: {len(over)}; counts not matching their tickets: {len(wrong)}"
    )


async def main(args: argparse.Namespace) -> None:
    await fresh_database(NAME)
    db = Database(URL, pool_size=args.concurrency)
    try:
        await load_bulk(db, customers=args.customers, invoices_per_customer=1)
        await add_operators(db, args.operators, args.capacity)
        people = await customers(db)
        random.Random(1).shuffle(people)
        print(
            f"{len(people)} customers loaded; {args.operators} operators online, "
            f"capacity {args.capacity} each, every category"
        )
        if not args.direct:
            await over_http(people, args)
            await assignment_figures(db, "HTTP")
            await reset(db)
        await direct(db, people, args)
        await assignment_figures(db, "direct")
    finally:
        await db.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--direct", action="store_true", help="no HTTP: the domain action only")
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--operators", type=int, default=50)
    parser.add_argument("--capacity", type=int, default=1000, help="open tickets per operator")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--requests", type=int, default=3000, help="direct: tickets")
    parser.add_argument("--duration", type=float, default=20.0, help="HTTP: seconds of load")
    parser.add_argument("--signed-in", type=int, default=200, help="HTTP: customers opening")
    asyncio.run(main(parser.parse_args()))
