"""The `kabinet` command: migrate, load demo data, serve, export the schema, reconcile."""

import argparse
import asyncio
import ctypes
import gc
import logging
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from pydantic import ValidationError

from gateway.settings import DEV_SIGNING_KEY_FILE, Settings

if TYPE_CHECKING:
    from domains.billing.invoice_run import RunProgress
    from domains.billing.proration import Period
    from domains.database import Database

T = TypeVar("T")

DEMO_LOGINS = (
    ("admin@example.com", "admin"),
    ("operator@example.com", "operator"),
    ("alice@example.com", "customer"),
    ("bob@example.com", "customer"),
)


def _migrate(settings: Settings) -> None:
    from migrations import upgrade

    if settings.database_url.startswith("sqlite"):
        Path(settings.database_url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    print(f"database migrated: {_safe_url(settings.database_url)}")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _progress(done: int, total: int) -> None:
    width = 40
    filled = width * done // max(total, 1)
    sys.stdout.write(f"\r  [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done >= total:
        sys.stdout.write("\n")
    sys.stdout.flush()


def _on_database(settings: Settings, action: "Callable[[Database], Awaitable[T]]") -> T:
    """Runs `action` on a database opened for it alone, closed when it returns."""
    from domains.database import Database

    async def run() -> T:
        db = Database(settings.database_url)
        try:
            return await action(db)
        finally:
            await db.dispose()

    return asyncio.run(run())


def _log_to_stderr(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s %(message)s"
    )


def _demo(settings: Settings) -> None:
    from gateway.demo import load_demo

    if settings.is_production:
        sys.exit("kabinet demo refuses KABINET_ENV=production: its accounts share one password")

    loaded = _on_database(
        settings,
        lambda db: load_demo(
            db,
            progress=_progress,
            zone=settings.billing_timezone,
            due_days=settings.invoice_due_days,
            run_at=settings.billing_run_at,
        ),
    )
    print("demo data loaded" if loaded else "demo data already present; left as it is")


def _reconcile(settings: Settings) -> None:
    """Prints every broken ledger invariant, naming its rows; exits 1 when there is one."""
    from domains.billing.reconcile import reconcile

    problems = _on_database(settings, reconcile)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        sys.exit(1)
    print("OK: the ledger balances and every invariant holds")


def _sweep(settings: Settings) -> None:
    """Ends stale pending card payments and deletes expired idempotency keys, once."""
    from gateway.services import payment_provider
    from gateway.worker import billing_sweep

    provider = payment_provider(settings)
    pending, purged = _on_database(settings, lambda db: billing_sweep(db, provider, settings))
    print(
        f"pending card payments: {pending.settled} settled, {pending.expired} expired, "
        f"{pending.unreachable} left pending (provider unreachable)"
    )
    print(f"idempotency keys deleted: {purged}")


def _overdue(settings: Settings) -> None:
    """Marks issued invoices past their due date overdue, once, as the worker does hourly."""
    from domains.billing.invoice_overdue import mark_overdue_invoices

    zone = settings.billing_timezone
    marked = _on_database(settings, lambda db: mark_overdue_invoices(db, zone=zone))
    print(f"invoices marked overdue: {marked}")


def _support_sweep(settings: Settings) -> None:
    """Finds and escalates SLA breaches and closes tickets left resolved, once, as the
    worker does every minute."""
    from domains.clock import SYSTEM_CLOCK
    from gateway.worker import support_sweep

    swept = _on_database(settings, lambda db: support_sweep(db, settings, SYSTEM_CLOCK))
    breaches = swept.breaches
    print(
        f"SLA breaches: {breaches.first_response} first response, {breaches.resolution} "
        f"resolution; {breaches.raised} priorities raised, {breaches.reassigned} reassigned"
    )
    print(f"resolved tickets closed: {swept.closed}")


def _dunning(settings: Settings) -> None:
    """Sends the payment reminders due, expires promised payments that ran out and suspends
    for debt, once, as the worker does hourly."""
    from domains.billing.dunning import run_dunning

    done = _on_database(
        settings,
        lambda db: run_dunning(
            db,
            zone=settings.billing_timezone,
            offsets=settings.dunning_reminders,
            suspend_after_days=settings.suspend_after_days,
        ),
    )
    print(
        f"reminders sent: {done.reminded}, promised payments expired: {done.expired},"
        f" subscriptions suspended: {done.suspended}"
    )


def _period(text: str) -> "Period":
    """`YYYY-MM`, the calendar month a run bills."""
    from datetime import date

    from domains.billing.proration import Period

    try:
        year, month = (int(part) for part in text.split("-"))
        return Period(date(year, month, 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a period is YYYY-MM, not {text!r}") from None


def _billing_run(settings: Settings, period: "Period | None", dry_run: bool) -> None:
    """Bills a period (default: this month in the billing time zone), or with `dry_run`
    prints what it would bill and writes nothing."""
    from domains.billing.autopay import AutopayMode
    from domains.billing.billable import count_billable
    from domains.billing.invoice_run import run_invoices
    from domains.billing.invoice_run_preview import preview_invoices
    from domains.billing.proration import Period
    from domains.clock import utcnow

    zone = settings.billing_timezone
    period = period or Period.of(utcnow().astimezone(zone).date())
    month = f"{period.start:%Y-%m}"
    if dry_run:
        preview = _on_database(settings, lambda db: preview_invoices(db, period, zone=zone))
        amounts = ", ".join(f"{amount} {currency}" for currency, amount in preview.amounts.items())
        print(
            f"dry run for {month}: {preview.customers} customers to bill, {preview.invoices}"
            f" invoices, {preview.lines} lines, {amounts or '0.00'}; nothing written"
        )
        return

    async def bill(db: "Database") -> "RunProgress":
        async with db.connect() as conn:
            total = await count_billable(conn, period, zone)
        with _run_progress(total) as progress:
            return await run_invoices(
                db,
                period,
                zone=zone,
                due_days=settings.invoice_due_days,
                autopay=AutopayMode(settings.billing_autopay),
                progress=progress,
            )

    done = _on_database(settings, bill)
    print(
        f"billing run {done.run_id} for {month} finished: {done.invoices} invoices,"
        f" {done.lines} lines, {done.amount} billed, {done.autopaid} paid from the balance"
    )


@contextmanager
def _run_progress(total: int) -> "Iterator[Callable[[RunProgress], None]]":
    """A progress bar of the customers read: counts, what is billed, rate and ETA."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("customers"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[invoices]} invoices, {task.fields[amount]} billed"),
        TextColumn("{task.fields[rate]}/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns) as bar:
        task = bar.add_task("run", total=total, invoices=0, amount="0.00", rate="0 customers")

        def tell(done: "RunProgress") -> None:
            bar.update(task, completed=done.customers, invoices=done.invoices, amount=done.amount)
            bar.update(task, rate=f"{bar.tasks[0].speed or 0:.0f} customers")

        yield tell


def _keygen(path: Path, *, quiet_if_exists: bool = False) -> None:
    from domains.identity.tokens import generate_signing_key

    if path.exists():
        if not quiet_if_exists:
            sys.exit(f"{path} exists; refusing to overwrite a signing key")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_bytes(generate_signing_key())
    print(f"new Ed25519 signing key written to {path}")


def _serve(settings: Settings, subgraph: str | None = None) -> None:
    import uvicorn

    from gateway.app import create_app
    from gateway.websocket_protocol import UVICORN_WEBSOCKETS
    from schema.federation import SUBGRAPHS

    if subgraph is not None and subgraph not in SUBGRAPHS:
        sys.exit(f"no subgraph {subgraph!r}; one of: {', '.join(SUBGRAPHS)}")
    _log_to_stderr(settings)
    app = create_app(settings, subgraph)
    # The schema and modules live as long as the process: keep them out of every
    # collection, and collect the young generation less often, so requests do not
    # stop for full collections.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    _return_large_blocks()
    if settings.metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port, settings.host, registry=app.state.metrics.registry)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # The app reads forwarded headers itself, from KABINET_TRUSTED_PROXIES only.
        proxy_headers=False,
        server_header=False,
        **UVICORN_WEBSOCKETS,
    )


# glibc's mallopt() parameter for the size from which a block gets its own mapping.
_M_MMAP_THRESHOLD = -3
_LARGE_BLOCK = 128 * 1024


def _return_large_blocks() -> None:
    """Large blocks always get their own mapping, given back when freed. glibc otherwise
    raises that threshold to the size of the largest block freed, so after a sign-in
    (argon2 works in 19 MiB) such blocks come from the heap and stay: some 20 MB of RSS
    per process for good. Nothing to do where the C library is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(_M_MMAP_THRESHOLD, _LARGE_BLOCK)


def _worker(settings: Settings) -> None:
    """Runs the outbox relay and the event consumers until SIGTERM or SIGINT, then lets
    them finish what they hold; /metrics on `worker_metrics_port` when set."""
    import signal

    from prometheus_client import start_http_server

    from gateway.services import Services
    from gateway.worker import Worker

    _log_to_stderr(settings)

    async def run() -> None:
        services = Services.from_settings(settings)
        worker = Worker(
            services,
            billing_schedule=settings.billing_schedule is not False,
            support_schedule=settings.support_schedule is not False,
        )
        if settings.worker_metrics_port is not None:
            start_http_server(settings.worker_metrics_port, registry=worker.registry)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await services.bus.start()
        try:
            await worker.run(stop)
        finally:
            await services.bus.stop()
            await services.aclose()

    asyncio.run(run())


def _dev(settings: Settings) -> None:
    from gateway.demo import DEMO_PASSWORD

    if settings.jwt_private_key is None and settings.jwt_private_key_file is None:
        _keygen(DEV_SIGNING_KEY_FILE, quiet_if_exists=True)
    _migrate(settings)
    _demo(settings)
    base = f"http://{settings.host}:{settings.port}"
    print("\nKabinet is starting.")
    print(f"  GraphiQL:  {base}/graphql")
    print(f"  REST:      POST {base}/auth/login, GET {base}/billing/invoices")
    print(f"  Live:      ws://{settings.host}:{settings.port}/graphql (graphql-transport-ws)")
    print(f"  Demo logins (password '{DEMO_PASSWORD}'):")
    for email, role in DEMO_LOGINS:
        print(f"    {email:<24} {role}")
    print()
    _serve(settings)


def _export(directory: Path) -> None:
    from schema.export import export_sdl

    for path in export_sdl(directory):
        print(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="kabinet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply database migrations (KABINET_DATABASE_URL)")
    commands.add_parser("demo", help="load the demo data once")
    serve = commands.add_parser(
        "serve", help="run the API server with settings from the environment"
    )
    serve.add_argument(
        "--subgraph", metavar="NAME", help="serve this subgraph alone at /graphql, for a router"
    )
    commands.add_parser("dev", help="keygen + migrate + demo + serve, on embedded defaults")
    commands.add_parser(
        "worker", help="run the outbox relay and event consumers (with Kafka or RabbitMQ)"
    )
    keygen = commands.add_parser("keygen", help="write a new Ed25519 JWT signing key (PEM)")
    keygen.add_argument("path", type=Path)
    schema = commands.add_parser("schema", help="schema tools")
    schema_commands = schema.add_subparsers(dest="schema_command", required=True)
    export = schema_commands.add_parser("export", help="write subgraph and composed SDL")
    export.add_argument("directory", type=Path)
    billing = commands.add_parser("billing", help="billing tools")
    billing_commands = billing.add_subparsers(dest="billing_command", required=True)
    billing_commands.add_parser("reconcile", help="check every ledger invariant; exit 1 if broken")
    run = billing_commands.add_parser(
        "run", help="bill a period: monthly invoices for every customer not yet billed"
    )
    run.add_argument(
        "--period",
        type=_period,
        metavar="YYYY-MM",
        help="the month to bill (default: this month in KABINET_BILLING_TIMEZONE)",
    )
    run.add_argument(
        "--dry-run", action="store_true", help="print what would be billed; write nothing"
    )
    billing_commands.add_parser(
        "sweep", help="end stale pending card payments, delete expired idempotency keys"
    )
    billing_commands.add_parser(
        "overdue", help="mark issued invoices past their due date (in the billing zone) overdue"
    )
    billing_commands.add_parser(
        "dunning",
        help="send the payment reminders due, expire promised payments, suspend for debt",
    )
    support = commands.add_parser("support", help="support tools")
    support_commands = support.add_subparsers(dest="support_command", required=True)
    support_commands.add_parser(
        "sweep",
        help="find SLA breaches (and escalate them), close tickets resolved "
        "KABINET_TICKET_AUTOCLOSE_DAYS ago",
    )

    args = parser.parse_args(argv)
    if args.command == "keygen":
        _keygen(args.path)
        return
    if args.command == "schema":
        _export(args.directory)
        return
    try:
        settings = Settings()
    except ValidationError as error:
        sys.exit(f"kabinet: the KABINET_* settings are not valid: {error}")
    if args.command == "serve":
        _serve(settings, args.subgraph)
        return
    if args.command == "billing" and args.billing_command == "run":
        _billing_run(settings, args.period, args.dry_run)
        return
    if args.command == "billing":
        {
            "reconcile": _reconcile,
            "sweep": _sweep,
            "overdue": _overdue,
            "dunning": _dunning,
        }[args.billing_command](settings)
        return
    if args.command == "support":
        {"sweep": _support_sweep}[args.support_command](settings)
        return
    {"migrate": _migrate, "demo": _demo, "dev": _dev, "worker": _worker}[args.command](settings)


if __name__ == "__main__":
    main()
