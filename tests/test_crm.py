"""The CRM timeline end to end: billing and support actions -> outbox -> relay -> Kafka
(Tansu) -> the `crm` consumer in the worker -> staff's `Customer.timeline`; redelivered
events add nothing."""

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest_asyncio
from sqlalchemy import func, select

from domains.billing.models import PaymentMethod
from domains.billing.pay_invoice import pay_invoice
from domains.billing.refund_payment import refund_payment
from domains.crm.consumer import CONSUMER_NAME, HANDLERS
from domains.crm.models import TimelineEntry
from domains.database import Database
from domains.identity.models import Role, User
from domains.identity.viewer import Viewer
from domains.support.models import Presence, TicketCategory, TicketChannel, TicketStatus
from domains.support.ticket_assign import reassign_ticket
from domains.support.ticket_create import create_ticket
from domains.support.ticket_status import set_ticket_status
from gateway.app import create_app
from resolvers.relay import to_global_id
from tests.conftest import app_client, graphql, load_demo_into, login, make_settings
from tests.conftest import migrated_database as migrated
from tests.event_rig import running_worker
from tests.support_fixtures import add_customer, add_operator, add_staff
from tests.test_analytics import payer

TIMELINE = """
query Timeline($id: ID!, $first: Int, $after: String) {
  customer(id: $id) {
    timeline(first: $first, after: $after) {
      edges { cursor node { eventId kind summary reference occurredAt actor { email } } }
      pageInfo { hasNextPage hasPreviousPage endCursor }
    }
  }
}
"""

# The event types the timeline records, as the entries' kinds.
KINDS = {
    "payment.created": "PAYMENT",
    "payment.refunded": "REFUND",
    "invoice.issued": "INVOICE_ISSUED",
    "invoice.paid": "INVOICE_PAID",
    "invoice.overdue": "INVOICE_OVERDUE",
}


@pytest_asyncio.fixture(scope="module")
async def crm_url() -> AsyncIterator[str]:
    async with migrated("kabinet_crm") as url:
        await load_demo_into(url)
        yield url


async def test_payments_and_a_refund_reach_the_timeline_once(
    crm_url: str, signing_key: bytes, kafka_bootstrap: str
) -> None:
    async with running_worker(crm_url, signing_key, kafka_bootstrap) as rig:
        db = rig.services.db
        customer, invoice_id, admin_id = await payer(db)
        first = await pay_invoice(
            db,
            customer,
            invoice_id=invoice_id,
            method=PaymentMethod.BALANCE,
            amount=Decimal("30.00"),
            idempotency_key=str(uuid.uuid4()),
        )
        await pay_invoice(
            db,
            customer,
            invoice_id=invoice_id,
            method=PaymentMethod.BALANCE,
            amount=None,
            idempotency_key=str(uuid.uuid4()),
        )
        await refund_payment(
            db,
            Viewer(admin_id, Role.ADMIN),
            payment_id=first.payment_id,
            amount=Decimal("5.25"),
            reason="goodwill",
            idempotency_key=str(uuid.uuid4()),
        )
        recorded = [row for row in await rig.events() if row.type in HANDLERS]
        assert [row.type for row in recorded] == [
            "payment.created",
            "payment.created",
            "invoice.paid",
            "payment.refunded",
        ]
        await rig.until_outcomes(CONSUMER_NAME, handled=len(recorded))
        async with db.connect() as conn:
            entries = await conn.scalar(select(func.count()).select_from(TimelineEntry))
        assert entries == len(recorded)

        # Published again: the consumer sees the same ids and writes nothing more.
        await rig.redeliver()
        await rig.until_outcomes(CONSUMER_NAME, handled=len(recorded), duplicate=len(recorded))
        async with db.connect() as conn:
            again = await conn.scalar(select(func.count()).select_from(TimelineEntry))
        assert again == entries

    customer_id = to_global_id("Customer", customer.customer_id)
    async for client in app_client(create_app(make_settings(crm_url, signing_key))):
        staff = await login(client, "operator@example.com")
        body = await graphql(client, TIMELINE, {"id": customer_id, "first": 3}, staff)
        assert "errors" not in body, body
        page = body["data"]["customer"]["timeline"]
        rest = await graphql(
            client,
            TIMELINE,
            {"id": customer_id, "first": 3, "after": page["pageInfo"]["endCursor"]},
            staff,
        )
        assert "errors" not in rest, rest
        # A customer, even the one it is about, may not read it.
        own = await graphql(
            client, TIMELINE, {"id": customer_id}, await login(client, "alice@example.com")
        )
        assert [e["extensions"]["code"] for e in own["errors"]] == ["FORBIDDEN"], own

    later = rest["data"]["customer"]["timeline"]
    assert (page["pageInfo"]["hasNextPage"], later["pageInfo"]["hasNextPage"]) == (True, False)
    assert later["pageInfo"]["hasPreviousPage"] is True
    nodes = [edge["node"] for edge in page["edges"] + later["edges"]]
    # Newest first: the events in reverse, one entry each.
    assert [node["eventId"] for node in nodes] == [str(row.id) for row in reversed(recorded)]
    assert [node["kind"] for node in nodes] == [KINDS[row.type] for row in reversed(recorded)]
    refund, paid, rest_payment, first_payment = nodes
    number = paid["summary"].split()[1]
    assert first_payment["summary"] == f"Payment of 30.00 RUB (balance) for invoice {number}"
    assert first_payment["reference"] == f"payment:{first.payment_id}"
    assert first_payment["actor"] is None
    assert rest_payment["summary"].startswith("Payment of ")
    assert paid["reference"] == f"invoice:{invoice_id}"
    assert refund["summary"] == (
        f"Refund of 5.25 RUB from payment {first.payment_id} (5.25 refunded in all): goodwill"
    )
    assert refund["actor"] == {"email": "admin@example.com"}


async def email_of(db: Database, user_id: int) -> str:
    async with db.connect() as conn:
        return (await conn.execute(select(User.email).where(User.id == user_id))).scalar_one()


async def test_a_ticket_and_staff_actions_on_it_reach_the_timeline(
    crm_url: str, signing_key: bytes, kafka_bootstrap: str
) -> None:
    async with running_worker(crm_url, signing_key, kafka_bootstrap) as rig:
        db = rig.services.db
        customer, contract_id = await add_customer(db)
        admin = await add_staff(db, Role.ADMIN)
        second = await add_operator(db, [TicketCategory.NO_CONNECTION], presence=Presence.AWAY)
        # Opened by staff for the customer (a phone call): the system assigns it, or queues
        # it with nobody online.
        created = await create_ticket(
            db,
            admin,
            category=TicketCategory.NO_CONNECTION,
            subject="No internet since the storm",
            body="Customer called: the line is dead.",
            contract_id=contract_id,
            customer_id=customer.customer_id,
            channel=TicketChannel.STAFF,
        )
        ticket_id = created.ticket.id
        await reassign_ticket(db, admin, ticket_id=ticket_id, operator_id=second.user_id)
        await set_ticket_status(db, second, ticket_id=ticket_id, status=TicketStatus.RESOLVED)
        recorded = [row for row in await rig.events() if row.type in HANDLERS]
        automatic = [] if created.assignment is None else ["ticket.assigned"]  # no entry
        assert [row.type for row in recorded] == [
            "ticket.created",
            *automatic,
            "ticket.assigned",
            "ticket.status_changed",
        ]
        await rig.until_outcomes(CONSUMER_NAME, handled=len(recorded))
        second_email = await email_of(db, second.user_id)
        admin_email = await email_of(db, admin.user_id)
    shown = [
        row
        for row in recorded
        if not (row.type == "ticket.assigned" and row.payload["assigned_by"] is None)
    ]

    async for client in app_client(create_app(make_settings(crm_url, signing_key))):
        staff = await login(client, "operator@example.com")
        body = await graphql(
            client, TIMELINE, {"id": to_global_id("Customer", customer.customer_id)}, staff
        )
    assert "errors" not in body, body
    nodes = [edge["node"] for edge in body["data"]["customer"]["timeline"]["edges"]]
    assert [node["eventId"] for node in nodes] == [str(row.id) for row in reversed(shown)]
    assert [(node["kind"], node["reference"]) for node in nodes] == [
        ("TICKET_STATUS_CHANGED", f"ticket:{ticket_id}"),
        ("TICKET_ASSIGNED", f"ticket:{ticket_id}"),
        ("TICKET_CREATED", f"ticket:{ticket_id}"),
    ]
    resolved, assigned, opened = nodes
    assert resolved["summary"] == f"Ticket #{ticket_id}: new -> resolved"
    assert resolved["actor"] == {"email": second_email}
    assert assigned["summary"] == f"Ticket #{ticket_id} assigned to {second_email}"
    assert assigned["actor"] == {"email": admin_email}
    assert opened["summary"] == (
        f"Ticket #{ticket_id} opened (no_connection, {created.ticket.priority.value}, staff):"
        " No internet since the storm"
    )
    assert opened["actor"] == {"email": admin_email}


async def test_a_staff_mutation_reaches_the_timeline_as_a_staff_action(
    crm_url: str, signing_key: bytes, kafka_bootstrap: str
) -> None:
    """audit.recorded, from the audit row's own unit of work, through the same outbox and
    consumer as every other entry."""
    async with running_worker(crm_url, signing_key, kafka_bootstrap) as rig:
        db = rig.services.db
        customer, invoice_id, _admin_id = await payer(db)
        paid = await pay_invoice(
            db,
            customer,
            invoice_id=invoice_id,
            method=PaymentMethod.BALANCE,
            amount=None,
            idempotency_key=str(uuid.uuid4()),
        )
        refund = """mutation($p: ID!, $k: String!) { refundPayment(paymentId: $p,
            amount: "1.00", reason: "goodwill", idempotencyKey: $k) { payment { id } } }"""
        async for client in app_client(create_app(make_settings(crm_url, signing_key))):
            admin = await login(client, "admin@example.com")
            variables = {"p": to_global_id("Payment", paid.payment_id), "k": str(uuid.uuid4())}
            body = await graphql(client, refund, variables, admin)
            assert "errors" not in body, body
        recorded = [row for row in await rig.events() if row.type in HANDLERS]
        assert [row.type for row in recorded] == [
            "payment.created",
            "invoice.paid",
            "payment.refunded",
            "audit.recorded",
        ]
        await rig.until_outcomes(CONSUMER_NAME, handled=len(recorded))

    async for client in app_client(create_app(make_settings(crm_url, signing_key))):
        staff = await login(client, "operator@example.com")
        body = await graphql(
            client, TIMELINE, {"id": to_global_id("Customer", customer.customer_id)}, staff
        )
    assert "errors" not in body, body
    newest = body["data"]["customer"]["timeline"]["edges"][0]["node"]
    assert newest["kind"] == "STAFF_ACTION"
    assert newest["summary"] == "Mutation.refundPayment by admin@example.com"
    assert newest["reference"] == f"audit:{recorded[-1].payload['audit_id']}"
    assert newest["actor"] == {"email": "admin@example.com"}
