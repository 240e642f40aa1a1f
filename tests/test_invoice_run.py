"""The monthly invoice run (issue 13, points 1 and 4): what it bills, exactly once.

Each test owns its database (SQLite and PostgreSQL), so reconcile over the whole of it
must hold after every scenario.
"""

import asyncio
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from sqlalchemy import func, insert, literal, select, text

from domains.billing.autopay import AutopayMode, autopay_amount
from domains.billing.invoice_issue import IssuedInvoice, post_issuance
from domains.billing.invoice_run import RUN_LOCK, RunProgress, invoice_number, run_invoices
from domains.billing.invoice_run_preview import preview_invoices
from domains.billing.models import (
    BillingRun,
    BillingRunState,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceStatus,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Transaction,
)
from domains.billing.pay_invoice import pay_invoice
from domains.billing.proration import Period
from domains.billing.reconcile import reconcile
from domains.clock import ManualClock
from domains.customers.models import (
    Contract,
    Customer,
    Segment,
    Subscription,
    SubscriptionPause,
    SubscriptionStatus,
    Tariff,
)
from domains.database import Database
from domains.identity.models import Role
from domains.identity.viewer import Viewer
from domains.outbox import OutboxEvent
from gateway.app import create_app
from tests.conftest import app_client, graphql, login, make_settings, migrated_database
from tests.test_payments import (
    balance_of,
    book_top_up,
    insert_customer,
    invoice_status,
    snapshot,
)

MOSCOW = ZoneInfo("Europe/Moscow")
JANUARY = Period(date(2026, 1, 1))
# The run fires on the 1st of the next month, 03:00 in Moscow.
FIRED = datetime(2026, 2, 1, 0, 0, tzinfo=UTC)
TABLES = ("invoices", "invoice_lines", "transactions", "outbox", "billing_runs")


async def make_tariff(db: Database, price: str) -> int:
    async with db.transaction() as session:
        stmt = insert(Tariff).values(
            code=f"T-{secrets.token_hex(4)}",
            name=f"Home {price}",
            description="",
            segment=Segment.HOME,
            monthly_price=Decimal(price),
            currency="RUB",
            download_mbps=100,
            upload_mbps=100,
            is_active=True,
        )
        return (await session.execute(stmt.returning(Tariff.id))).scalar_one()


async def make_customer(
    db: Database,
    subscriptions: list[tuple[int, datetime, datetime | None, SubscriptionStatus]],
) -> int:
    """A customer with subscriptions (tariff, started_at, ended_at, status)."""
    async with db.transaction() as session:
        _, customer_id = await insert_customer(session, "run", datetime(2025, 1, 1, tzinfo=UTC))
        for tariff_id, started_at, ended_at, status in subscriptions:
            contract_id = (
                await session.execute(
                    insert(Contract)
                    .values(
                        customer_id=customer_id,
                        tariff_id=tariff_id,
                        address="Lenina st. 1",
                        start_date=started_at.date(),
                    )
                    .returning(Contract.id)
                )
            ).scalar_one()
            await session.execute(
                insert(Subscription).values(
                    customer_id=customer_id,
                    contract_id=contract_id,
                    tariff_id=tariff_id,
                    status=status,
                    started_at=started_at,
                    ended_at=ended_at,
                )
            )
    return customer_id


async def pause_through_january(db: Database, customer_id: int) -> None:
    """Pauses are dated: the customer's subscriptions paused from December to February."""
    async with db.transaction() as session:
        owner = select(Customer.user_id).where(Customer.id == customer_id).scalar_subquery()
        await session.execute(
            insert(SubscriptionPause).from_select(
                [
                    "subscription_id",
                    "customer_id",
                    "first_day",
                    "until",
                    "created_by",
                    "created_at",
                ],
                select(
                    Subscription.id,
                    Subscription.customer_id,
                    literal(date(2025, 12, 20)),
                    literal(date(2026, 2, 5)),
                    owner,
                    literal(FIRED),
                ).where(Subscription.customer_id == customer_id),
            )
        )


LONG_AGO = datetime(2025, 6, 1, tzinfo=UTC)
ACTIVE = SubscriptionStatus.ACTIVE


async def run(
    db: Database, autopay: AutopayMode = AutopayMode.FULL, **options: object
) -> RunProgress:
    return await run_invoices(
        db, JANUARY, zone=MOSCOW, due_days=10, autopay=autopay, clock=ManualClock(FIRED), **options
    )


async def assert_reconciled(db: Database) -> None:
    assert [str(problem) for problem in await reconcile(db)] == []


async def issued_events(db: Database) -> list[dict]:
    async with db.connect() as conn:
        stmt = select(OutboxEvent.payload).where(OutboxEvent.type == "invoice.issued")
        return [row.payload for row in await conn.execute(stmt)]


async def monthly_invoices(db: Database) -> list[tuple[int, int]]:
    """(customer, invoice) of every monthly invoice of January."""
    async with db.connect() as conn:
        stmt = (
            select(Invoice.customer_id, Invoice.id)
            .where(Invoice.kind == InvoiceKind.MONTHLY, Invoice.period_start == JANUARY.start)
            .order_by(Invoice.customer_id)
        )
        return [tuple(row) for row in await conn.execute(stmt)]


async def test_a_run_bills_prorated_lines_per_customer(db: Database) -> None:
    full, mid = await make_tariff(db, "590.00"), await make_tariff(db, "100.00")
    # 2026-01-17 21:30 UTC is the 18th in Moscow: 14 of 31 days of 100.00 is 45.16.
    joined = datetime(2026, 1, 17, 21, 30, tzinfo=UTC)
    billed = await make_customer(db, [(full, LONG_AGO, None, ACTIVE), (mid, joined, None, ACTIVE)])
    # Ended on the 10th (Moscow): 10 of 31 days of 590.00 is 190.32.
    left = datetime(2026, 1, 10, 12, tzinfo=UTC)
    leaving = await make_customer(db, [(full, LONG_AGO, left, SubscriptionStatus.CANCELLED)])
    # Nothing to bill: paused, gone before January, joining after it.
    paused = await make_customer(db, [(full, LONG_AGO, None, SubscriptionStatus.PAUSED)])
    await pause_through_january(db, paused)
    gone = datetime(2025, 12, 31, 20, 59, tzinfo=UTC)  # 23:59 in Moscow on the 31st
    await make_customer(db, [(full, LONG_AGO, gone, SubscriptionStatus.CANCELLED)])
    await make_customer(db, [(full, datetime(2026, 1, 31, 21, 0, tzinfo=UTC), None, ACTIVE)])

    done = await run(db)

    assert (done.invoices, done.lines, done.amount) == (2, 3, Decimal("825.48"))
    async with db.connect() as conn:
        invoices = (
            await conn.execute(
                select(Invoice).where(Invoice.period_start == JANUARY.start).order_by(Invoice.id)
            )
        ).all()
        lines = (await conn.execute(select(InvoiceLine).order_by(InvoiceLine.id))).all()
        record = (await conn.execute(select(BillingRun))).one()
    by_customer = {row.customer_id: row for row in invoices}
    assert set(by_customer) == {billed, leaving}
    assert paused not in by_customer
    first = by_customer[billed]
    assert first.kind is InvoiceKind.MONTHLY
    assert first.status is InvoiceStatus.ISSUED
    assert first.number == invoice_number(billed, JANUARY) == f"M202601-{billed}"
    assert (first.amount, first.period_end) == (Decimal("635.16"), date(2026, 1, 31))
    assert first.issued_at == FIRED
    assert first.due_date == date(2026, 2, 11)  # issued on Feb 1st in Moscow, plus 10 days
    assert by_customer[leaving].amount == Decimal("190.32")
    assert [
        (line.invoice_id, line.first_day, line.last_day, line.days, line.unit_price, line.amount)
        for line in lines
    ] == [
        (first.id, date(2026, 1, 1), date(2026, 1, 31), 31, Decimal("590.00"), Decimal("590.00")),
        (first.id, date(2026, 1, 18), date(2026, 1, 31), 14, Decimal("100.00"), Decimal("45.16")),
        (
            by_customer[leaving].id,
            date(2026, 1, 1),
            date(2026, 1, 10),
            10,
            Decimal("590.00"),
            Decimal("190.32"),
        ),
    ]
    assert lines[1].description == "Home 100.00: 2026-01-18 to 2026-01-31, 14 of 31 days"
    assert record.state is BillingRunState.FINISHED
    assert (record.invoices, record.lines, record.amount, record.autopaid) == (
        2,
        3,
        Decimal("825.48"),
        0,
    )
    assert record.finished_at == FIRED
    events = {event["invoice_id"]: event for event in await issued_events(db)}
    assert events[first.id] == {
        "version": 1,
        "invoice_id": first.id,
        "customer_id": billed,
        "number": first.number,
        "period_start": "2026-01-01",
        "period_end": "2026-01-31",
        "amount": "635.16",
        "currency": "RUB",
        "due_date": "2026-02-11",
        "line_count": 2,
        "lines": [
            {
                "subscription_id": lines[0].subscription_id,
                "tariff_id": full,
                "days": 31,
                "amount": "590.00",
                "description": lines[0].description,
            },
            {
                "subscription_id": lines[1].subscription_id,
                "tariff_id": mid,
                "days": 14,
                "amount": "45.16",
                "description": lines[1].description,
            },
        ],
    }
    assert set(events) == {first.id, by_customer[leaving].id}
    await assert_reconciled(db)


async def test_a_second_run_creates_nothing(db: Database) -> None:
    tariff = await make_tariff(db, "450.00")
    for _ in range(3):
        await make_customer(db, [(tariff, LONG_AGO, None, ACTIVE)])
    await run(db, batch_size=2)
    before = await snapshot(db, TABLES)

    again = await run(db, batch_size=2)

    assert (again.customers, again.invoices, again.lines) == (0, 0, 0)
    after = await snapshot(db, TABLES)
    assert after["billing_runs"][:1] == before["billing_runs"]
    assert {name: rows for name, rows in after.items() if name != "billing_runs"} == {
        name: rows for name, rows in before.items() if name != "billing_runs"
    }
    second = after["billing_runs"][1]
    assert second[3] == BillingRunState.FINISHED
    assert len(await issued_events(db)) == 3
    await assert_reconciled(db)


async def test_a_run_stopped_after_a_batch_finishes_when_started_again(db: Database) -> None:
    tariff = await make_tariff(db, "300.00")
    customers = [await make_customer(db, [(tariff, LONG_AGO, None, ACTIVE)]) for _ in range(5)]

    def stop(progress: RunProgress) -> None:
        raise RuntimeError(f"stopped after {progress.invoices} invoices")

    with pytest.raises(RuntimeError, match="stopped after 2 invoices"):
        await run(db, batch_size=2, progress=stop)
    assert [customer for customer, _ in await monthly_invoices(db)] == customers[:2]
    await assert_reconciled(db)

    done = await run(db, batch_size=2)

    assert done.invoices == 3
    billed = await monthly_invoices(db)
    assert [customer for customer, _ in billed] == customers
    assert sorted(event["invoice_id"] for event in await issued_events(db)) == sorted(
        invoice for _, invoice in billed
    )
    async with db.connect() as conn:
        states = (
            await conn.execute(
                select(BillingRun.state, BillingRun.invoices).order_by(BillingRun.id)
            )
        ).all()
        receivables = (
            await conn.execute(select(func.count()).select_from(Transaction))
        ).scalar_one()
    assert [tuple(row) for row in states] == [
        (BillingRunState.FAILED, 2),
        (BillingRunState.FINISHED, 3),
    ]
    assert receivables == 2 * 5  # one issuance movement (two entries) per invoice
    await assert_reconciled(db)


async def test_a_dry_run_writes_nothing(db: Database) -> None:
    full, mid = await make_tariff(db, "590.00"), await make_tariff(db, "100.00")
    joined = datetime(2026, 1, 17, 21, 30, tzinfo=UTC)
    await make_customer(db, [(full, LONG_AGO, None, ACTIVE), (mid, joined, None, ACTIVE)])
    paused = await make_customer(db, [(full, LONG_AGO, None, SubscriptionStatus.PAUSED)])
    await pause_through_january(db, paused)
    before = await snapshot(db, TABLES)

    preview = await preview_invoices(db, JANUARY, zone=MOSCOW, batch_size=1)

    # The paused customer is read (a pause is dated), and has nothing to bill.
    assert (preview.customers, preview.invoices, preview.lines) == (2, 1, 2)
    assert preview.amounts == {"RUB": Decimal("635.16")}
    assert await snapshot(db, TABLES) == before
    done = await run(db)
    assert (done.invoices, done.lines, done.amount) == (1, 2, Decimal("635.16"))
    assert (await preview_invoices(db, JANUARY, zone=MOSCOW)).invoices == 0
    await assert_reconciled(db)


# Bills January in batches of two and SIGKILLs itself once the first batch has committed.
KILLED_AFTER_A_BATCH = """
import asyncio, os, signal, sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo
from domains.billing.autopay import AutopayMode
from domains.billing.invoice_run import run_invoices
from domains.billing.proration import Period
from domains.database import Database

async def main():
    db = Database(sys.argv[1])
    await run_invoices(
        db, Period(date(2026, 1, 1)), zone=ZoneInfo("Europe/Moscow"), due_days=10,
        autopay=AutopayMode.FULL, batch_size=2,
        progress=lambda done: os.kill(os.getpid(), signal.SIGKILL),
    )

asyncio.run(main())
"""


async def test_a_run_killed_mid_period_bills_each_invoice_once_when_started_again(
    db: Database, db_url: str
) -> None:
    tariff = await make_tariff(db, "300.00")
    customers = [await make_customer(db, [(tariff, LONG_AGO, None, ACTIVE)]) for _ in range(5)]
    for customer in customers:
        await top_up(db, customer, "500.00")

    killed = await command(sys.executable, "-c", KILLED_AFTER_A_BATCH, db_url)

    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert [customer for customer, _ in await monthly_invoices(db)] == customers[:2]
    await assert_reconciled(db)

    done = await run(db, batch_size=2)

    billed = await monthly_invoices(db)
    assert [customer for customer, _ in billed] == customers
    assert sorted(event["invoice_id"] for event in await issued_events(db)) == sorted(
        invoice for _, invoice in billed
    )
    async with db.connect() as conn:
        records = (await conn.execute(select(BillingRun))).all()
    # The killed run's record was left running; the next run carried it on to the end.
    assert [(r.id, r.state, r.invoices, r.lines, r.autopaid) for r in records] == [
        (done.run_id, BillingRunState.FINISHED, 5, 5, 5)
    ]
    # Each invoice paid from the balance once, the killed batch's payments with it.
    for customer, invoice_id in billed:
        assert await invoice_status(db, invoice_id) is InvoiceStatus.PAID
        assert await balance_of(db, customer) == Decimal("200.00")
    await assert_reconciled(db)


@dataclass(frozen=True, slots=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


async def command(program: str, *args: str, **environment: str) -> Ran:
    """Our own program, run to its end in a process of its own."""
    process = await asyncio.create_subprocess_exec(
        program,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **environment},
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


async def kabinet(url: str, *args: str) -> Ran:
    program = str(Path(sys.executable).parent / "kabinet")
    return await command(program, *args, KABINET_DATABASE_URL=url)


async def test_the_cli_runs_and_dry_runs_a_period_on_sqlite(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    try:
        tariff = await make_tariff(db, "590.00")
        await make_customer(db, [(tariff, LONG_AGO, None, ACTIVE)])
        await top_up(db, await make_customer(db, [(tariff, LONG_AGO, None, ACTIVE)]), "600.00")

        dry = await kabinet(sqlite_url, "billing", "run", "--period", "2026-01", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "2 customers to bill, 2 invoices, 2 lines, 1180.00 RUB; nothing written" in (
            dry.stdout
        )
        assert await monthly_invoices(db) == []

        unknown = await command(
            str(Path(sys.executable).parent / "kabinet"),
            *("billing", "run", "--period", "2026-01"),
            KABINET_DATABASE_URL=sqlite_url,
            KABINET_BILLING_AUTOPAY="sometimes",
        )
        assert unknown.returncode != 0
        assert "billing_autopay" in unknown.stderr
        assert await monthly_invoices(db) == []

        wet = await kabinet(sqlite_url, "billing", "run", "--period", "2026-01")
        assert wet.returncode == 0, wet.stderr
        assert (
            "for 2026-01 finished: 2 invoices, 2 lines, 1180.00 billed, 1 paid from the balance"
        ) in wet.stdout
        assert len(await monthly_invoices(db)) == 2

        again = await kabinet(sqlite_url, "billing", "run", "--period", "2026-01")
        assert "finished: 0 invoices, 0 lines, 0.00 billed" in again.stdout

        wrong = await kabinet(sqlite_url, "billing", "run", "--period", "2026-13")
        assert wrong.returncode == 2
        assert "a period is YYYY-MM, not '2026-13'" in wrong.stderr
        assert (await kabinet(sqlite_url, "billing", "reconcile")).returncode == 0
    finally:
        await db.dispose()


async def test_staff_read_billing_runs_newest_first_and_no_one_else(
    sqlite_demo_copy: str, signing_key: bytes
) -> None:
    db = Database(sqlite_demo_copy)
    try:
        for month in (1, 2):
            done = await run_invoices(
                db, Period(date(2027, month, 1)), zone=MOSCOW, due_days=10, autopay=AutopayMode.FULL
            )
    finally:
        await db.dispose()
    fields = "id periodStart periodEnd state startedAt finishedAt invoices lines amount autopaid"
    page = f"edges {{ cursor node {{ {fields} }} }} pageInfo {{ hasNextPage endCursor }}"
    async for client in app_client(create_app(make_settings(sqlite_demo_copy, signing_key))):
        operator = await login(client, "operator@example.com")
        first = await graphql(client, f"{{ billingRuns(first: 1) {{ {page} }} }}", token=operator)
        assert "errors" not in first, first
        connection = first["data"]["billingRuns"]
        [february] = [edge["node"] for edge in connection["edges"]]
        assert (february["periodStart"], february["periodEnd"]) == ("2027-02-01", "2027-02-28")
        assert (february["state"], february["autopaid"]) == ("FINISHED", done.autopaid)
        assert february["invoices"] > 0
        assert february["lines"] >= february["invoices"]
        assert connection["pageInfo"]["hasNextPage"] is True
        rest = await graphql(
            client,
            f"query($after: String) {{ billingRuns(first: 5, after: $after) {{ {page} }} }}",
            {"after": connection["pageInfo"]["endCursor"]},
            operator,
        )
        # Then January, and the demo's own runs (it bills its last months by the run), newest
        # first.
        periods = [edge["node"]["periodStart"] for edge in rest["data"]["billingRuns"]["edges"]]
        assert periods[0] == "2027-01-01"
        assert periods == sorted(periods, reverse=True)
        one = await graphql(
            client,
            f"query($id: ID!) {{ billingRun(id: $id) {{ {fields} }} }}",
            {"id": february["id"]},
            operator,
        )
        assert one["data"]["billingRun"] == february

        alice = await login(client, "alice@example.com")
        for query, variables in (
            ("{ billingRuns(first: 1) { edges { node { id } } } }", None),
            ("query($id: ID!) { billingRun(id: $id) { id } }", {"id": february["id"]}),
        ):
            refused = await graphql(client, query, variables, alice)
            assert [e["extensions"]["code"] for e in refused["errors"]] == ["FORBIDDEN"]
        probed = await graphql(
            client, "query($id: ID!) { node(id: $id) { id } }", {"id": february["id"]}, alice
        )
        assert [e["extensions"]["code"] for e in probed["errors"]] == ["NOT_FOUND"]
        anonymous = await graphql(client, "{ billingRuns(first: 1) { edges { node { id } } } }")
        assert [e["extensions"]["code"] for e in anonymous["errors"]] == ["UNAUTHENTICATED"]
        # The customer's own invoices show the run's, lines and all.
        mine = await graphql(
            client,
            "{ invoices(first: 1) { edges { node { number periodStart lines { days } } } } }",
            token=alice,
        )
        [newest] = [edge["node"] for edge in mine["data"]["invoices"]["edges"]]
        assert newest["number"].startswith("M202702-")
        assert newest["periodStart"] == "2027-02-01"
        assert all(line["days"] == 28 for line in newest["lines"])


@pytest_asyncio.fixture
async def pg_db() -> AsyncIterator[Database]:
    async with migrated_database("kabinet_run") as url:
        database = Database(url)
        yield database
        await database.dispose()


async def wait_for_backend(db: Database, wait_event: str, query: str, count: int = 1) -> None:
    """Until `count` other sessions of this database wait on `wait_event` running `query`."""
    seen = (
        select(func.count())
        .select_from(text("pg_stat_activity"))
        .where(
            text("datname = current_database()"),
            text("pid <> pg_backend_pid()"),
            text("wait_event = :event").bindparams(event=wait_event),
            text("query LIKE :query").bindparams(query=query),
        )
    )
    async with asyncio.timeout(120):  # a guard against a hang, never a measure
        while True:
            async with db.connect() as conn:
                if (await conn.execute(seen)).scalar_one() >= count:
                    return
            await asyncio.sleep(0.05)


@pytest.mark.postgres
async def test_a_second_runner_waits_for_the_first(pg_db: Database) -> None:
    tariff = await make_tariff(pg_db, "300.00")
    await make_customer(pg_db, [(tariff, LONG_AGO, None, ACTIVE)])
    async with pg_db.connect() as holder:
        await holder.execute(select(func.pg_advisory_lock(RUN_LOCK)))
        second = asyncio.create_task(run(pg_db))
        await wait_for_backend(pg_db, "advisory", "%pg_advisory_lock%")
        assert not second.done()
        assert await monthly_invoices(pg_db) == []
        await holder.execute(select(func.pg_advisory_unlock(RUN_LOCK)))
    done = await second
    assert done.invoices == 1
    await assert_reconciled(pg_db)


@pytest.mark.postgres
async def test_a_run_killed_inside_a_batch_leaves_nothing_of_it(pg_db: Database) -> None:
    """SIGKILLed with its batch written but not committed: the batch rolls back whole,
    and the next run bills every customer once."""
    tariff = await make_tariff(pg_db, "300.00")
    customers = [await make_customer(pg_db, [(tariff, LONG_AGO, None, ACTIVE)]) for _ in range(3)]
    # A run killed before, still `running`: the next runner carries it on, so its batch ends
    # with an UPDATE of this row, which the lock below holds back.
    async with pg_db.transaction() as session:
        left = insert(BillingRun).values(
            period_start=JANUARY.start,
            period_end=JANUARY.end,
            state=BillingRunState.RUNNING,
            started_at=FIRED,
            invoices=0,
            lines=0,
            amount=Decimal("0.00"),
            autopaid=0,
        )
        run_id = (await session.execute(left.returning(BillingRun.id))).scalar_one()
    url = pg_db.engine.url.render_as_string(hide_password=False)
    async with pg_db.transaction() as session:
        await session.execute(
            select(BillingRun.id).where(BillingRun.id == run_id).with_for_update()
        )
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "kabinet"),
            "billing",
            "run",
            "--period",
            "2026-01",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "KABINET_DATABASE_URL": url},
        )
        # Its invoices, lines, receivables and events are written; the counts wait.
        await wait_for_backend(pg_db, "transactionid", "UPDATE billing_runs%")
        process.kill()
        assert await process.wait() == -signal.SIGKILL
    assert await monthly_invoices(pg_db) == []
    assert await issued_events(pg_db) == []

    done = await run(pg_db)

    assert (done.run_id, done.invoices) == (run_id, 3)
    billed = await monthly_invoices(pg_db)
    assert [customer for customer, _ in billed] == customers
    assert len(await issued_events(pg_db)) == 3
    async with pg_db.connect() as conn:
        records = (await conn.execute(select(BillingRun))).all()
    assert [(r.id, r.state, r.invoices) for r in records] == [(run_id, BillingRunState.FINISHED, 3)]
    await assert_reconciled(pg_db)


async def test_a_subscription_billed_by_a_single_invoice_is_not_billed_again(
    db: Database,
) -> None:
    tariff = await make_tariff(db, "590.00")
    both = await make_customer(db, [(tariff, LONG_AGO, None, ACTIVE)] * 2)
    await make_customer(db, [(tariff, LONG_AGO, None, ACTIVE)])  # billed already
    async with db.transaction() as session:
        subscriptions = (
            await session.execute(
                select(Subscription.id, Subscription.customer_id).order_by(Subscription.id)
            )
        ).all()
        # Migration 0008's kind of history: one subscription's invoice for January, its line.
        for subscription_id, customer_id in (subscriptions[0], subscriptions[2]):
            invoice_id = (
                await session.execute(
                    insert(Invoice)
                    .values(
                        customer_id=customer_id,
                        subscription_id=subscription_id,
                        kind=InvoiceKind.SINGLE,
                        number=f"S-{subscription_id}",
                        period_start=JANUARY.start,
                        period_end=JANUARY.end,
                        amount=Decimal("590.00"),
                        currency="RUB",
                        status=InvoiceStatus.ISSUED,
                        issued_at=FIRED,
                        due_date=date(2026, 2, 11),
                        created_at=FIRED,
                    )
                    .returning(Invoice.id)
                )
            ).scalar_one()
            await session.execute(
                insert(InvoiceLine).values(
                    invoice_id=invoice_id,
                    subscription_id=subscription_id,
                    tariff_id=tariff,
                    period_start=JANUARY.start,
                    period_end=JANUARY.end,
                    first_day=JANUARY.start,
                    last_day=JANUARY.end,
                    days=31,
                    unit_price=Decimal("590.00"),
                    amount=Decimal("590.00"),
                    currency="RUB",
                    description="Home 590.00: 2026-01-01 to 2026-01-31, 31 of 31 days",
                )
            )
            await post_issuance(
                session, [IssuedInvoice(invoice_id, customer_id, Decimal("590.00"), "RUB", FIRED)]
            )

    done = await run(db)

    assert (done.invoices, done.lines) == (1, 1)
    [(customer, invoice_id)] = await monthly_invoices(db)
    assert customer == both
    async with db.connect() as conn:
        billed = (
            await conn.execute(
                select(InvoiceLine.subscription_id).where(InvoiceLine.invoice_id == invoice_id)
            )
        ).scalars()
        assert list(billed) == [subscriptions[1].id]
    await assert_reconciled(db)


async def test_a_batch_is_a_fixed_number_of_statements_events_included(db: Database) -> None:
    """Set-based: reading and writing a batch takes the same statements for 3 customers
    or 30, its 30 events and its autopay included (the unit of work writes the events in
    one INSERT)."""
    tariff = await make_tariff(db, "100.00")
    for n in range(30):
        customer = await make_customer(db, [(tariff, LONG_AGO, None, ACTIVE)] * 3)
        if n % 3:
            # Pays 300.00 whole, or 200.00 of it.
            await top_up(db, customer, "300.00" if n % 3 == 1 else "200.00")
    sent: list[str] = []
    db.on_statement.add(sent.append)

    done = await run(db, AutopayMode.PARTIAL)

    db.on_statement.discard(sent.append)
    assert (done.invoices, done.lines, done.autopaid) == (30, 90, 20)
    heads = [" ".join(sql.split()[:3]) for sql in sent]
    inserts = [head for head in heads if head.startswith("INSERT")]
    assert sorted(insert for insert in inserts if insert != "INSERT INTO outbox") == [
        "INSERT INTO billing_runs",
        "INSERT INTO invoice_lines",
        "INSERT INTO invoices",
        "INSERT INTO payments",
        "INSERT INTO transactions",
        "INSERT INTO transactions",
    ]
    # One INSERT for the batch's events (on PostgreSQL wrapped with the relay's NOTIFY).
    assert sum("INSERT INTO outbox" in sql for sql in sent) == 1
    # The balances taken from and the invoices paid off, each in one UPDATE.
    assert heads.count("UPDATE customers SET") == 1
    assert heads.count("UPDATE invoices SET") == 1
    async with db.connect() as conn:
        events = await conn.scalar(
            text("SELECT count(*) FROM outbox WHERE type = 'invoice.issued'")
        )
        paid = await conn.scalar(text("SELECT count(*) FROM outbox WHERE type = 'invoice.paid'"))
    assert (events, paid) == (30, 10)
    await assert_reconciled(db)


async def top_up(db: Database, customer_id: int, amount: str) -> None:
    async with db.transaction() as session:
        await book_top_up(session, customer_id, Decimal(amount), FIRED)


async def customer_events(db: Database, customer_id: int) -> list[tuple[str, dict]]:
    """(type, payload) of the customer's events, in the order they were written."""
    async with db.connect() as conn:
        stmt = (
            select(OutboxEvent.type, OutboxEvent.payload)
            .where(OutboxEvent.subject == f"customer:{customer_id}")
            .order_by(OutboxEvent.occurred_at)
        )
        return [tuple(row) for row in await conn.execute(stmt)]


async def balance_payments(db: Database, customer_id: int) -> list[tuple]:
    async with db.connect() as conn:
        stmt = (
            select(Payment.invoice_id, Payment.amount, Payment.method, Payment.status)
            .where(Payment.customer_id == customer_id)
            .order_by(Payment.id)
        )
        return [tuple(row) for row in await conn.execute(stmt)]


# Autopay of a 590.00 invoice from balances of 1000.00 (covers it), 100.00 (does not) and
# none: per mode, (what each pays, the invoices' statuses, the invoices paid from a balance).
PAID, ISSUED = InvoiceStatus.PAID, InvoiceStatus.ISSUED
SUCCEEDED = PaymentStatus.SUCCEEDED
AUTOPAY = {
    AutopayMode.FULL: (("590.00", None, None), (PAID, ISSUED, ISSUED), 1),
    AutopayMode.PARTIAL: (("590.00", "100.00", None), (PAID, ISSUED, ISSUED), 2),
    AutopayMode.OFF: ((None, None, None), (ISSUED, ISSUED, ISSUED), 0),
}


@pytest.mark.parametrize("mode", list(AUTOPAY))
async def test_autopay_pays_from_the_balance_as_its_mode_says(
    db: Database, mode: AutopayMode
) -> None:
    tariff = await make_tariff(db, "590.00")
    customers = [await make_customer(db, [(tariff, LONG_AGO, None, ACTIVE)]) for _ in range(3)]
    balances = ("1000.00", "100.00", "0.00")
    for customer, balance in zip(customers, balances, strict=True):
        if Decimal(balance):
            await top_up(db, customer, balance)
    paid, statuses, autopaid = AUTOPAY[mode]

    done = await run(db, mode, batch_size=2)

    assert (done.invoices, done.autopaid) == (3, autopaid)
    async with db.connect() as conn:
        record = (await conn.execute(select(BillingRun.autopaid))).scalar_one()
    assert record == autopaid
    billed = dict(await monthly_invoices(db))
    for customer, balance, pays, status in zip(customers, balances, paid, statuses, strict=True):
        invoice_id = billed[customer]
        assert await invoice_status(db, invoice_id) is status
        taken = Decimal(pays or "0.00")
        assert await balance_of(db, customer) == Decimal(balance) - taken
        expected = [] if pays is None else [(invoice_id, taken, PaymentMethod.BALANCE, SUCCEEDED)]
        # The top-up's own payment comes first.
        assert (await balance_payments(db, customer))[1 if Decimal(balance) else 0 :] == expected
        types = [kind for kind, _ in await customer_events(db, customer)]
        after_issue = [] if pays is None else ["payment.created", "balance.changed"]
        if status is PAID:
            after_issue.append("invoice.paid")
        assert types == ["invoice.issued", *after_issue]
    await assert_reconciled(db)
    # Paid or not, a second run bills and pays nothing more.
    before = await snapshot(db, ("payments", "transactions", "outbox"))
    again = await run(db, mode)
    assert (again.invoices, again.autopaid) == (0, 0)
    assert await snapshot(db, ("payments", "transactions", "outbox")) == before


async def test_autopay_writes_what_a_balance_payment_writes(db: Database) -> None:
    """The run pays one customer's invoice; the other, topped up after it, pays theirs
    with payInvoice: the payments, ledger entries and events are alike but for ids."""
    tariff = await make_tariff(db, "590.00")
    autopaid = await make_customer(db, [(tariff, LONG_AGO, None, ACTIVE)])
    paying = await make_customer(db, [(tariff, LONG_AGO, None, ACTIVE)])
    await top_up(db, autopaid, "700.00")

    await run(db)

    await top_up(db, paying, "700.00")
    billed = dict(await monthly_invoices(db))
    async with db.connect() as conn:
        user_id = (
            await conn.execute(select(Customer.user_id).where(Customer.id == paying))
        ).scalar_one()
    viewer = Viewer(user_id, Role.CUSTOMER, paying)
    paid = await pay_invoice(
        db,
        viewer,
        invoice_id=billed[paying],
        method=PaymentMethod.BALANCE,
        amount=None,
        idempotency_key="pay-january",
    )
    assert paid.invoice is not None
    assert paid.invoice.status is PAID

    async def written(customer: int) -> tuple[list, list, list]:
        async with db.connect() as conn:
            payment = (
                await conn.execute(
                    select(
                        Payment.amount,
                        Payment.currency,
                        Payment.method,
                        Payment.status,
                        Payment.refunded_amount,
                        Payment.provider,
                    ).where(Payment.invoice_id == billed[customer])
                )
            ).all()
            entries = (
                await conn.execute(
                    select(Transaction.account, Transaction.type, Transaction.amount)
                    .join(Payment, Payment.id == Transaction.payment_id)
                    .where(Payment.invoice_id == billed[customer])
                    .order_by(Transaction.id)
                )
            ).all()
        ids = {"payment_id", "invoice_id", "customer_id", "number"}
        events = [
            (kind, {name: value for name, value in payload.items() if name not in ids})
            for kind, payload in await customer_events(db, customer)
            if kind != "invoice.issued"
        ]
        return [tuple(row) for row in payment], [tuple(row) for row in entries], events

    assert await written(autopaid) == await written(paying)
    assert await balance_of(db, autopaid) == await balance_of(db, paying) == Decimal("110.00")
    await assert_reconciled(db)


@pytest.mark.parametrize(
    ("mode", "balance", "taken"),
    [
        (AutopayMode.FULL, "590.00", "590.00"),  # exactly covered
        (AutopayMode.FULL, "589.99", "0.00"),
        (AutopayMode.PARTIAL, "589.99", "589.99"),
        (AutopayMode.PARTIAL, "0.00", "0.00"),
        (AutopayMode.PARTIAL, "1000.00", "590.00"),
        (AutopayMode.OFF, "1000.00", "0.00"),
    ],
)
def test_what_autopay_takes_of_a_590_invoice(mode: AutopayMode, balance: str, taken: str) -> None:
    assert autopay_amount(mode, Decimal(balance), Decimal("590.00")) == Decimal(taken)
