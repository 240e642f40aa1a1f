"""Opening tickets: who for whom, each priority rule, SLA due times, refusals that write
nothing. On SQLite and PostgreSQL (a database the module shares, quieted per test)."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio

from domains.clock import ManualClock
from domains.customers.models import ContractStatus, Segment
from domains.database import Database
from domains.errors import DomainError
from domains.identity.models import Role
from domains.identity.viewer import Viewer
from domains.support.models import (
    AuthorKind,
    RuleCondition,
    TicketCategory,
    TicketChannel,
    TicketPriority,
    TicketStatus,
)
from domains.support.priority import PriorityRuleRow, rules_in_order
from domains.support.priority_rule_edit import RuleChange, update_priority_rule
from domains.support.thread import MAX_BODY
from domains.support.ticket_create import TicketCreated, create_ticket
from tests.conftest import migrated_database
from tests.support_fixtures import add_customer, add_operator, add_staff, counts, events_of, quiet

NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


@pytest_asyncio.fixture(scope="module")
async def support_pg_url() -> AsyncIterator[str]:
    async with migrated_database("kabinet_tickets") as url:
        yield url


@pytest_asyncio.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, support_pg_url: str) -> AsyncIterator[Database]:
    sqlite = request.param == "sqlite"
    database = Database(request.getfixturevalue("sqlite_url") if sqlite else support_pg_url)
    await quiet(database)
    yield database
    await database.dispose()


RuleKey = tuple[RuleCondition, TicketCategory | None]


async def _rules(db: Database) -> dict[RuleKey, PriorityRuleRow]:
    async with db.read() as reader:
        return {(rule.condition, rule.category): rule for rule in await rules_in_order(reader)}


async def _open(
    db: Database,
    viewer: Viewer,
    category: TicketCategory = TicketCategory.BILLING,
    *,
    now: datetime = NOW,
    **given: object,
) -> TicketCreated:
    arguments: dict = {"subject": "Charged twice", "body": "Twice in November.", **given}
    arguments.setdefault("channel", TicketChannel.WEB)
    return await create_ticket(db, viewer, category=category, clock=ManualClock(now), **arguments)


async def test_a_customer_opens_a_ticket(db: Database) -> None:
    customer, contract_id = await add_customer(db)
    created = await _open(db, customer, contract_id=contract_id, subject=" Charged\n\t twice ")
    ticket = created.ticket
    assert (ticket.customer_id, ticket.contract_id, ticket.created_by) == (
        customer.customer_id,
        contract_id,
        customer.user_id,
    )
    assert (ticket.subject, ticket.status, ticket.channel) == (
        "Charged twice",
        TicketStatus.NEW,
        TicketChannel.WEB,
    )
    rules = await _rules(db)
    assert ticket.priority is TicketPriority.NORMAL
    assert ticket.priority_rule_id == rules[(RuleCondition.CATEGORY, TicketCategory.BILLING)].id
    # Normal: a first answer within 4 hours, resolution within a day.
    assert ticket.first_response_due_at == NOW + timedelta(minutes=240)
    assert ticket.resolution_due_at == NOW + timedelta(minutes=1440)
    assert (created.message.author_kind, created.message.author_id, created.message.body) == (
        AuthorKind.CUSTOMER,
        customer.user_id,
        "Twice in November.",
    )
    # Nobody is online: it waits in the queue.
    assert ticket.assignee_id is None
    assert created.assignment is None
    [(kind, payload), (added, _)] = await events_of(db, ticket.id)
    assert (kind, added) == ("ticket.created", "ticket.message_added")
    assert payload == {
        "version": 1,
        "ticket_id": ticket.id,
        "customer_id": customer.customer_id,
        "contract_id": contract_id,
        "category": "billing",
        "priority": "normal",
        "priority_rule_id": ticket.priority_rule_id,
        "status": "new",
        "channel": "web",
        "subject": "Charged twice",
        "created_by": customer.user_id,
    }


async def test_staff_open_a_ticket_on_a_customers_behalf(db: Database) -> None:
    customer, _ = await add_customer(db)
    staff = await add_staff(db, Role.OPERATOR)
    created = await _open(db, staff, customer_id=customer.customer_id, channel=TicketChannel.STAFF)
    assert (created.ticket.customer_id, created.ticket.created_by, created.ticket.channel) == (
        customer.customer_id,
        staff.user_id,
        TicketChannel.STAFF,
    )
    assert (created.message.author_kind, created.message.author_id) == (
        AuthorKind.OPERATOR,
        staff.user_id,
    )


async def _priority(db: Database, customer: Viewer, category: TicketCategory, **given: object):
    ticket = (await _open(db, customer, category, **given)).ticket
    rules = await _rules(db)
    by_id = {rule.id: key for key, rule in rules.items()}
    return ticket.priority, by_id.get(ticket.priority_rule_id)


async def test_each_categorys_base_priority(db: Database) -> None:
    expected = {
        TicketCategory.SLOW_SPEED: TicketPriority.NORMAL,
        TicketCategory.BILLING: TicketPriority.NORMAL,
        TicketCategory.EQUIPMENT: TicketPriority.NORMAL,
        TicketCategory.MOVING: TicketPriority.LOW,
        TicketCategory.OTHER: TicketPriority.LOW,
    }
    for category, priority in expected.items():
        customer, _ = await add_customer(db)  # each their first ticket: no repeat
        assert await _priority(db, customer, category) == (
            priority,
            (RuleCondition.CATEGORY, category),
        )
    # No connection: normal, then one step up because the customer reports no connection.
    customer, _ = await add_customer(db)
    assert await _priority(db, customer, TicketCategory.NO_CONNECTION) == (
        TicketPriority.HIGH,
        (RuleCondition.NO_CONNECTION, None),
    )


async def test_suspended_service_raises_a_step(db: Database) -> None:
    customer, _ = await add_customer(db, contract_status=ContractStatus.SUSPENDED)
    assert await _priority(db, customer, TicketCategory.MOVING) == (
        TicketPriority.NORMAL,
        (RuleCondition.SERVICE_SUSPENDED, None),
    )


async def test_business_customers_raise_a_step(db: Database) -> None:
    customer, _ = await add_customer(db, segment=Segment.BUSINESS)
    assert await _priority(db, customer, TicketCategory.BILLING) == (
        TicketPriority.HIGH,
        (RuleCondition.BUSINESS_SEGMENT, None),
    )
    # A business tariff on a terminated contract is not a business customer's.
    former, _ = await add_customer(
        db, segment=Segment.BUSINESS, contract_status=ContractStatus.TERMINATED
    )
    assert (await _priority(db, former, TicketCategory.BILLING))[0] is TicketPriority.NORMAL


async def test_a_repeat_ticket_within_seven_days_raises_a_step(db: Database) -> None:
    customer, _ = await add_customer(db)
    await _open(db, customer, TicketCategory.EQUIPMENT, now=NOW - timedelta(days=7))
    assert await _priority(db, customer, TicketCategory.BILLING) == (
        TicketPriority.HIGH,
        (RuleCondition.REPEAT_TICKET, None),
    )
    other, _ = await add_customer(db)
    await _open(db, other, TicketCategory.EQUIPMENT, now=NOW - timedelta(days=7, seconds=1))
    assert (await _priority(db, other, TicketCategory.BILLING))[0] is TicketPriority.NORMAL


async def test_raises_add_up_to_urgent_and_the_last_change_is_recorded(db: Database) -> None:
    customer, _ = await add_customer(
        db, segment=Segment.BUSINESS, contract_status=ContractStatus.SUSPENDED
    )
    # normal -> high (suspended) -> urgent (no connection); business and repeat change nothing.
    await _open(db, customer, TicketCategory.NO_CONNECTION, now=NOW - timedelta(days=1))
    assert await _priority(db, customer, TicketCategory.NO_CONNECTION) == (
        TicketPriority.URGENT,
        (RuleCondition.NO_CONNECTION, None),
    )
    created = await _open(db, customer, TicketCategory.NO_CONNECTION)
    # Urgent: 15 minutes to a first answer, 4 hours to resolution.
    assert created.ticket.first_response_due_at == NOW + timedelta(minutes=15)
    assert created.ticket.resolution_due_at == NOW + timedelta(minutes=240)


async def test_edited_rules_apply_to_the_next_ticket(db: Database) -> None:
    admin = await add_staff(db)
    rules = await _rules(db)
    business = rules[(RuleCondition.BUSINESS_SEGMENT, None)]
    billing = rules[(RuleCondition.CATEGORY, TicketCategory.BILLING)]
    try:
        await update_priority_rule(db, admin, business.id, RuleChange(raise_steps=2))
        await update_priority_rule(
            db, admin, billing.id, RuleChange(set_priority=TicketPriority.LOW)
        )
        customer, _ = await add_customer(db, segment=Segment.BUSINESS)
        assert await _priority(db, customer, TicketCategory.BILLING) == (
            TicketPriority.HIGH,
            (RuleCondition.BUSINESS_SEGMENT, None),
        )
        await update_priority_rule(db, admin, business.id, RuleChange(enabled=False))
        other, _ = await add_customer(db, segment=Segment.BUSINESS)
        assert await _priority(db, other, TicketCategory.BILLING) == (
            TicketPriority.LOW,
            (RuleCondition.CATEGORY, TicketCategory.BILLING),
        )
    finally:
        await update_priority_rule(db, admin, business.id, RuleChange(raise_steps=1, enabled=True))
        await update_priority_rule(
            db, admin, billing.id, RuleChange(set_priority=TicketPriority.NORMAL)
        )
    saved = (await _rules(db))[(RuleCondition.BUSINESS_SEGMENT, None)]
    assert (saved.raise_steps, saved.enabled, saved.updated_by) == (1, True, admin.user_id)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (RuleChange(set_priority=TicketPriority.HIGH, raise_steps=1), "not both"),
        (RuleChange(raise_steps=4), "between 0 and 3"),
        (RuleChange(raise_steps=0), "give setPriority"),
        (RuleChange(within_days=3), "repeat-ticket"),
        (RuleChange(description=" "), "description"),
    ],
)
async def test_rule_edits_that_break_a_rule_are_refused(
    db: Database, change: RuleChange, message: str
) -> None:
    admin = await add_staff(db)
    rule = (await _rules(db))[(RuleCondition.BUSINESS_SEGMENT, None)]
    with pytest.raises(DomainError, match=message) as refused:
        await update_priority_rule(db, admin, rule.id, change)
    assert refused.value.code == "BAD_USER_INPUT"
    assert (await _rules(db))[(RuleCondition.BUSINESS_SEGMENT, None)] == rule
    operator = await add_staff(db, Role.OPERATOR)
    with pytest.raises(DomainError) as forbidden:
        await update_priority_rule(db, operator, rule.id, RuleChange(enabled=False))
    assert forbidden.value.code == "FORBIDDEN"


BAD = {
    "empty subject": ({"subject": "   "}, "BAD_USER_INPUT"),
    "long subject": ({"subject": "x" * 201}, "BAD_USER_INPUT"),
    "empty body": ({"body": " \n"}, "BAD_USER_INPUT"),
    "long body": ({"body": "x" * (MAX_BODY + 1)}, "BAD_USER_INPUT"),
    "unknown category": ({"category": "weather"}, "BAD_USER_INPUT"),
    "staff channel": ({"channel": TicketChannel.STAFF}, "BAD_USER_INPUT"),
    "unknown channel": ({"channel": "fax"}, "BAD_USER_INPUT"),
    "another's contract": ({"contract_id": "theirs"}, "NOT_FOUND"),
    "missing contract": ({"contract_id": 2**62}, "NOT_FOUND"),
    "another customer": ({"customer_id": "theirs"}, "NOT_FOUND"),
}


@pytest.mark.parametrize("case", list(BAD))
async def test_bad_input_writes_nothing(db: Database, case: str) -> None:
    customer, _ = await add_customer(db)
    other, theirs = await add_customer(db)
    given, code = BAD[case]
    given = {
        name: {"contract_id": theirs, "customer_id": other.customer_id}[name]
        if value == "theirs"
        else value
        for name, value in given.items()
    }
    category = given.pop("category", TicketCategory.BILLING)
    before = await counts(db)
    with pytest.raises(DomainError) as refused:
        await _open(db, customer, category, **given)
    assert refused.value.code == code
    assert await counts(db) == before


async def test_staff_name_an_existing_customer_on_the_staff_channel(db: Database) -> None:
    customer, _ = await add_customer(db)
    staff = await add_staff(db, Role.OPERATOR)
    before = await counts(db)
    for given, code in (
        ({"channel": TicketChannel.STAFF}, "BAD_USER_INPUT"),  # whose?
        ({"customer_id": customer.customer_id}, "BAD_USER_INPUT"),  # on the web?
        ({"customer_id": 2**62, "channel": TicketChannel.STAFF}, "NOT_FOUND"),
    ):
        with pytest.raises(DomainError) as refused:
            await _open(db, staff, **given)
        assert refused.value.code == code
    assert await counts(db) == before


@pytest.mark.postgres
async def test_a_ticket_opened_and_assigned_is_twelve_statements(support_pg_url: str) -> None:
    """Pinned as the payment's are (tests/test_payment_statements.py): the contract's
    check, the customer's standing and last tickets, the rules, the SLA targets, the
    ticket, its message, the operator's pick, slot and the ticket's assignee, the
    assignment, the events; a change shows here."""
    db = Database(support_pg_url)
    try:
        await quiet(db)
        await add_operator(db, [TicketCategory.EQUIPMENT])
        customer, contract_id = await add_customer(db)
        await _open(db, customer, TicketCategory.EQUIPMENT)  # each statement prepared once
        seen: list[str] = []
        db.on_statement.add(seen.append)
        created = await _open(db, customer, TicketCategory.EQUIPMENT, contract_id=contract_id)
        db.on_statement.discard(seen.append)
        assert created.ticket.assignee_id is not None
        assert len(seen) == 12, seen
        assert seen[-1].startswith("WITH inserted AS (INSERT INTO outbox")  # the events, last
    finally:
        await db.dispose()
