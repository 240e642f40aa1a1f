"""Each role against each operation: the answer, and no trace of a refused mutation."""

import json
from collections.abc import AsyncIterator, Iterator
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLObjectType,
    Undefined,
    get_named_type,
    get_nullable_type,
    is_non_null_type,
)
from sqlalchemy import select
from websockets.asyncio.client import connect

from adapters.sandbox_acquirer import create_sandbox_app
from domains.identity.models import Role
from domains.identity.viewer import Viewer
from domains.models import metadata
from gateway.app import create_app
from resolvers.relay import to_global_id
from schema.permissions import access_for, role_may
from tests.conftest import app_client, graphql, login, make_settings
from tests.servers import free_socket, serve
from tests.test_subscriptions import (
    _close_code,
    _embedded,
    _error_code,
    _serving,
    _subscribed,
    _token,
    _wait_subscribers,
)
from tests.test_support_reads import _customer_of
from tests.test_support_thread import make_ticket

ROLES = ("anonymous", "customer", "operator", "admin")
LOGINS = {
    "customer": "alice@example.com",
    "operator": "operator@example.com",
    "admin": "admin@example.com",
}
TABLES = (
    "users",
    "support_operators",
    "password_resets",
    "customers",
    "sessions",
    "refresh_tokens",
    "outbox",
    "invoices",
    "payments",
    "transactions",
    "refunds",
    "idempotency_keys",
    "tickets",
    "ticket_messages",
    "ticket_sla_policies",
    "push_devices",
    "notification_settings",
    "notification_preferences",
    "promised_payments",
    "subscriptions",
    "subscription_suspensions",
    "subscription_tariffs",
    "subscription_pauses",
    "tariffs",
    "tariff_prices",
    "password_resets",
    "contracts",
)


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    """The sandbox acquirer, for topUpBalance; its webhooks are never triggered here."""
    app = create_sandbox_app("http://127.0.0.1:9/unused", b"matrix-secret")
    with serve(app, free_socket()) as url:
        yield url


@pytest_asyncio.fixture
async def client(
    sqlite_demo_copy: str, signing_key: bytes, sandbox_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    """On a private copy of the demo database: these tests change it."""
    settings = make_settings(
        sqlite_demo_copy,
        signing_key,
        login_attempts_per_account_and_ip=1000,
        login_attempts_per_account=1000,
        login_attempts_per_ip=1000,
        session_check_cache_seconds=0,
        payment_provider_url=sandbox_url,
    )
    async for http in app_client(create_app(settings)):
        yield http


async def _snapshot(client: httpx.AsyncClient) -> dict[str, list[tuple]]:
    db = client._transport.app.state.services.db  # type: ignore[attr-defined]
    async with db.connect() as conn:
        snapshot = {}
        for name in TABLES:
            table = metadata.tables[name]
            rows = await conn.execute(select(table).order_by(*table.primary_key))
            snapshot[name] = [tuple(row) for row in rows]
        return snapshot


async def _audit_outcomes(client: httpx.AsyncClient) -> list[str]:
    db = client._transport.app.state.services.db  # type: ignore[attr-defined]
    table = metadata.tables["audit_log"]
    async with db.connect() as conn:
        return list(await conn.scalars(select(table.c.outcome).order_by(table.c.id)))


async def _bob(client: httpx.AsyncClient) -> str:
    admin = await login(client, "admin@example.com")
    body = await graphql(
        client,
        '{ customers(search: "bob@example.com") { edges { node { user { id } } } } }',
        token=admin,
    )
    return body["data"]["customers"]["edges"][0]["node"]["user"]["id"]


async def _alice_invoice(client: httpx.AsyncClient, status: str) -> dict:
    alice = await login(client, "alice@example.com")
    query = "query($s: [InvoiceStatus!]) { invoices(status: $s, first: 1) {"
    query += " edges { node { id payments { id } } } } }"
    body = await graphql(client, query, {"s": [status]}, token=alice)
    return body["data"]["invoices"]["edges"][0]["node"]


async def _alice_ticket(client: httpx.AsyncClient) -> str:
    """A new ticket of alice's (written as createTicket would leave it), by global id."""
    db = client._transport.app.state.services.db  # type: ignore[attr-defined]
    customer_id, user_id = await _customer_of(db, "alice@example.com")
    ticket = await make_ticket(db, Viewer(user_id, Role.CUSTOMER, customer_id))
    return to_global_id("Ticket", ticket.id)


async def _alice_subscription(client: httpx.AsyncClient) -> tuple[str, str]:
    """Alice's first subscription, and a tariff it may change to."""
    alice = await login(client, "alice@example.com")
    body = await graphql(client, "{ me { customer { subscriptions { id } } } }", token=alice)
    subscription = body["data"]["me"]["customer"]["subscriptions"][0]["id"]
    body = await graphql(
        client,
        "query($s: ID!) { availableTariffs(subscriptionId: $s) { id } }",
        {"s": subscription},
        alice,
    )
    return subscription, body["data"]["availableTariffs"][0]["id"]


async def _lifecycle_variables(client: httpx.AsyncClient, query: str) -> dict:
    """Alice's subscription, a tariff, days ahead; a scheduled change to cancel or a pause
    to end, made by Alice first, for the operations that need one."""
    subscription, tariff = await _alice_subscription(client)
    alice = await login(client, "alice@example.com")
    if "cancelTariffChange" in query:
        change = "mutation($s: ID!, $t: ID!) { changeTariff(subscriptionId: $s, tariffId: $t,"
        change += " when: PERIOD_END) { scheduled } }"
        body = await graphql(client, change, {"s": subscription, "t": tariff}, alice)
        assert body["data"]["changeTariff"]["scheduled"], body
    if "resumeSubscription" in query:
        pause = "mutation($s: ID!, $from: Date!, $until: Date!) { pauseSubscription("
        pause += "subscriptionId: $s, from: $from, until: $until) { pause { id } } }"
        body = await graphql(client, pause, {"s": subscription, **_pause_days()}, alice)
        assert "errors" not in body, body
    mine = await graphql(client, "{ me { customer { id contracts { id } } } }", token=alice)
    customer = mine["data"]["me"]["customer"]
    variables = {
        "sub": subscription,
        "tariff": tariff,
        "customer": customer["id"],
        "contract": customer["contracts"][0]["id"],
        **_pause_days(),
    }
    return {name: value for name, value in variables.items() if f"${name}" in query}


def _pause_days() -> dict[str, str]:
    """Ten days from a month ahead: the demo runs on the system's clock."""
    first = date.today() + timedelta(days=30)
    return {"from": first.isoformat(), "until": (first + timedelta(days=10)).isoformat()}


async def _variables(client: httpx.AsyncClient, query: str) -> dict | None:
    if "$ticket" in query:
        return {"ticket": await _alice_ticket(client)}
    if "$sub" in query or "$tariff" in query or "$contract" in query:
        return await _lifecycle_variables(client, query)
    if "$id" in query:
        return {"id": await _bob(client)}
    if "$staff" in query:
        operator = await login(client, "operator@example.com")
        return {
            "staff": (await graphql(client, "{ me { id } }", token=operator))["data"]["me"]["id"]
        }
    if "$customer" in query:
        admin = await login(client, "admin@example.com")
        body = await graphql(
            client,
            '{ customers(search: "alice@example.com") { edges { node { id } } } }',
            token=admin,
        )
        return {"customer": body["data"]["customers"]["edges"][0]["node"]["id"]}
    if "$invoice" in query:
        return {"invoice": (await _alice_invoice(client, "OVERDUE"))["id"]}
    if "$payment" in query:
        return {"payment": (await _alice_invoice(client, "PAID"))["payments"][0]["id"]}
    return None


ADDRESS = 'region: "Москва", city: "Москва", street: "Тверская", house: "1", postalCode: "125009"'
# name -> (operation, roles allowed). Mutations touch the database when they run.
MUTATIONS = {
    "updateMyProfile": (
        'mutation { updateMyProfile(fullName: "Alice Q") { fullName } }',
        {"customer"},
    ),
    "updateUser": (
        "mutation($id: ID!) { updateUser(id: $id, isActive: false) { isActive } }",
        {"admin"},
    ),
    "logoutEverywhere": ("mutation { logoutEverywhere }", {"customer", "operator", "admin"}),
    "login": (
        'mutation { login(email: "bob@example.com", password: "kabinet-demo") { sessionId } }',
        set(ROLES),
    ),
    "logout": ("mutation { logout }", {"customer", "operator", "admin"}),
    "changePassword": (
        'mutation { changePassword(currentPassword: "kabinet-demo",'
        ' newPassword: "a much longer passphrase, 2026") }',
        {"customer", "operator", "admin"},
    ),
    "createTicket": (
        'mutation($customer: ID) { createTicket(input: {category: BILLING, subject: "Matrix",'
        ' body: "Hello", customerId: $customer}) { status } }',
        {"customer", "operator", "admin"},
    ),
    "saveSupportOperator": (
        "mutation($staff: ID!) { saveSupportOperator(userId: $staff, capacity: 7) { capacity } }",
        {"admin"},
    ),
    "requestPasswordReset": (
        'mutation { requestPasswordReset(email: "bob@example.com") }',
        set(ROLES),
    ),
    "payInvoice": (
        "mutation($invoice: ID!) { payInvoice(input: {invoiceId: $invoice, method: BALANCE,"
        ' amount: "1.00", idempotencyKey: "matrix"}) { payment { status } } }',
        {"customer"},
    ),
    "refundPayment": (
        'mutation($payment: ID!) { refundPayment(paymentId: $payment, amount: "1.00",'
        ' reason: "goodwill", idempotencyKey: "matrix")'
        " { payment { refundedAmount { amount } } } }",
        {"admin"},
    ),
    "topUpBalance": (
        'mutation { topUpBalance(amount: "10.00", idempotencyKey: "matrix") {'
        " payment { status } confirmationUrl } }",
        {"customer"},
    ),
    # Support's thread and lifecycle.
    "addTicketMessage": (
        'mutation($ticket: ID!) { addTicketMessage(ticketId: $ticket, body: "Hello") {'
        " message { authorKind } } }",
        {"customer", "operator", "admin"},
    ),
    "addInternalNote": (
        'mutation($ticket: ID!) { addInternalNote(ticketId: $ticket, body: "Note") {'
        " message { internal } } }",
        {"operator", "admin"},
    ),
    "setTicketStatus": (
        "mutation($ticket: ID!) { setTicketStatus(ticketId: $ticket, status: OPEN) { status } }",
        {"operator", "admin"},
    ),
    "updateSlaPolicy": (
        "mutation { updateSlaPolicy(priority: LOW, firstResponseMinutes: 400,"
        " resolutionMinutes: 4000) { resolutionMinutes } }",
        {"admin"},
    ),
    "registerPushDevice": (
        'mutation { registerPushDevice(platform: ANDROID, token: "matrix-token",'
        ' appId: "ru.kabinet", locale: "ru") { platform } }',
        {"customer", "operator", "admin"},
    ),
    "updateNotificationPreferences": (
        "mutation { updateNotificationPreferences(preferences: [{category: BILLING,"
        " medium: SMS, enabled: false}]) { timeZone } }",
        {"customer", "operator", "admin"},
    ),
    # Alice owes an overdue invoice: she may take one; staff on her behalf.
    "activatePromisedPayment": (
        'mutation($customer: ID) { activatePromisedPayment(amount: "10.00",'
        " customerId: $customer) { promisedPayment { status } customer { balance { amount } } } }",
        {"customer", "operator", "admin"},
    ),
}
MUTATIONS |= {
    "changeTariff": (
        "mutation($sub: ID!, $tariff: ID!) { changeTariff(subscriptionId: $sub,"
        " tariffId: $tariff, when: PERIOD_END) { scheduled effectiveFrom } }",
        {"customer", "admin"},
    ),
    "cancelTariffChange": (
        "mutation($sub: ID!) { cancelTariffChange(subscriptionId: $sub) { id } }",
        {"customer", "admin"},
    ),
    "pauseSubscription": (
        "mutation($sub: ID!, $from: Date!, $until: Date!) { pauseSubscription("
        "subscriptionId: $sub, from: $from, until: $until) { pause { firstDay until } } }",
        {"customer", "operator", "admin"},
    ),
    "resumeSubscription": (
        "mutation($sub: ID!) { resumeSubscription(subscriptionId: $sub) { pause { resumedOn } } }",
        {"customer", "operator", "admin"},
    ),
    "createTariff": (
        'mutation { createTariff(code: "home-matrix", name: "Matrix", segment: HOME,'
        ' monthlyPrice: "700.00", downloadMbps: 300, uploadMbps: 300) { code } }',
        {"admin"},
    ),
    "changeTariffPrice": (
        'mutation($tariff: ID!) { changeTariffPrice(tariffId: $tariff, monthlyPrice: "777.00",'
        ' effectiveFrom: "2099-01-01") { id } }',
        {"admin"},
    ),
    "archiveTariff": (
        "mutation($tariff: ID!) { archiveTariff(tariffId: $tariff) { isActive } }",
        {"admin"},
    ),
    "voidInvoice": (
        'mutation($invoice: ID!) { voidInvoice(invoiceId: $invoice, reason: "matrix") { status } }',
        {"admin"},
    ),
    "createContract": (
        "mutation($customer: ID!, $tariff: ID!, $from: Date!) { createContract("
        "customerId: $customer, tariffId: $tariff, startsOn: $from, address: {"
        f"{ADDRESS}}}) {{ address }} }}",
        {"admin"},
    ),
    "updateContract": (
        "mutation($contract: ID!) { updateContract(contractId: $contract, address: {"
        f"{ADDRESS}}}) {{ address }} }}",
        {"admin"},
    ),
    "createSubscription": (
        "mutation($contract: ID!, $tariff: ID!, $from: Date!) { createSubscription("
        "contractId: $contract, tariffId: $tariff, startsOn: $from) { status } }",
        {"admin"},
    ),
    "createCustomer": (
        'mutation { createCustomer(email: "matrix@example.ru", fullName: "Матрица",'
        ' contractNum: "K-MATRIX") { contractNum } }',
        {"admin"},
    ),
}
QUERIES = {
    "me": ("{ me { email } }", {"customer", "operator", "admin"}),
    "tariffs": ("{ tariffs { name } }", set(ROLES)),
    "invoices": ("{ invoices(first: 2) { edges { node { number } } } }", {"customer"}),
    "customers": (
        "{ customers(first: 2) { edges { node { contractNum } } } }",
        {"operator", "admin"},
    ),
    "users": ("{ users(first: 2) { edges { node { email } } } }", {"operator", "admin"}),
    "mySessions": ("{ mySessions { id current } }", {"customer", "operator", "admin"}),
    "balanceHistory": ("{ balanceHistory(first: 2) { edges { node { type } } } }", {"customer"}),
    "billingRuns": (
        "{ billingRuns(first: 2) { edges { node { state } } } }",
        {"operator", "admin"},
    ),
    "promisedPayments": (
        "query($customer: ID) { promisedPayments(customerId: $customer) { status } }",
        {"customer", "operator", "admin"},
    ),
    "paymentStatistics": (
        '{ paymentStatistics(from: "2026-01-01", to: "2026-01-31") { totals { payments } } }',
        {"operator", "admin"},
    ),
    "availableTariffs": (
        "query($sub: ID!) { availableTariffs(subscriptionId: $sub) { code } }",
        {"customer", "operator", "admin"},
    ),
    "invoiceStatistics": (
        '{ invoiceStatistics(from: "2026-01-01", to: "2026-01-31") { totals { invoices } } }',
        {"operator", "admin"},
    ),
    "slaPolicies": ("{ slaPolicies { priority resolutionMinutes } }", {"admin"}),
    # A customer's own account, reached as theirs: the timeline is still staff's.
    "timeline": (
        "{ timeline: me { customer { timeline(first: 2) { edges { node { kind } } } } } }",
        {"operator", "admin"},
    ),
    # A customer's own ticket (alice's), any for staff.
    "ticket": (
        "query($ticket: ID!) { ticket(id: $ticket) { status messages { body } } }",
        {"customer", "operator", "admin"},
    ),
    "myDevices": ("{ myDevices { id } }", {"customer", "operator", "admin"}),
    "notificationPreferences": (
        "{ notificationPreferences { locale channels { enabled } } }",
        {"customer", "operator", "admin"},
    ),
    "myNotifications": (
        "{ myNotifications(first: 2) { edges { node { title } } } }",
        {"customer", "operator", "admin"},
    ),
    "unreadNotificationCount": (
        "{ unreadNotificationCount }",
        {"customer", "operator", "admin"},
    ),
    # A mutation, but the demo has no inbox entries to mark: it changes nothing.
    "markNotificationsRead": (
        "mutation { markNotificationsRead }",
        {"customer", "operator", "admin"},
    ),
    "notificationLog": (
        "query($customer: ID!) { notificationLog(customerId: $customer, first: 2)"
        " { edges { node { status } } } }",
        {"operator", "admin"},
    ),
    "notificationPreview": (
        '{ notificationPreview(eventType: "invoice.overdue", medium: SMS, locale: "en",'
        ' data: {number: "2026-11-1", amount: "10.00", currency: "RUB"}) { text smsSegments } }',
        {"operator", "admin"},
    ),
    "ticketQueue": (
        "{ ticketQueue(first: 2) { edges { node { status } } } }",
        {"operator", "admin"},
    ),
    "ticketPriorityRules": ("{ ticketPriorityRules { condition } }", {"operator", "admin"}),
    "auditLog": ("{ auditLog(first: 2) { edges { node { operation } } } }", {"admin"}),
    "supportOperators": (
        "{ supportOperators(first: 2) { edges { node { presence } } } }",
        {"operator", "admin"},
    ),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name", [*MUTATIONS, *QUERIES])
async def test_role_against_operation(client: httpx.AsyncClient, role: str, name: str):
    query, allowed = {**MUTATIONS, **QUERIES}[name]
    variables = await _variables(client, query)
    token = await login(client, LOGINS[role]) if role in LOGINS else None
    before = await _snapshot(client)
    audited = await _audit_outcomes(client)
    body = await graphql(client, query, variables, token)
    after = await _snapshot(client)
    # A refusal inside a staff mutation is recorded, and nothing else of it is kept.
    if role not in allowed:
        assert "OK" not in (await _audit_outcomes(client))[len(audited) :]
    if role in allowed:
        assert "errors" not in body, body
        assert body["data"][name] is not None
        if name in MUTATIONS:
            assert before != after, "an allowed mutation changes something"
    else:
        expected = "UNAUTHENTICATED" if role == "anonymous" else "FORBIDDEN"
        assert [e["extensions"]["code"] for e in body["errors"]] == [expected]
        assert before == after, "a refused operation leaves no trace"


async def test_mutation_inputs_cannot_set_what_the_role_may_not(client: httpx.AsyncClient):
    alice = await login(client, "alice@example.com")
    before = await _snapshot(client)
    for attempt in (
        'mutation { updateMyProfile(fullName: "A", balance: "1000000.00") { fullName } }',
        'mutation { updateMyProfile(fullName: "A", contractNum: "K-1") { fullName } }',
        'mutation { updateMyProfile(fullName: "A", role: ADMIN) { fullName } }',
    ):
        body = await graphql(client, attempt, token=alice)
        assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert await _snapshot(client) == before


async def test_admin_role_change_ends_the_users_sessions(client: httpx.AsyncClient):
    operator = await login(client, "operator@example.com")
    admin = await login(client, "admin@example.com")
    body = await graphql(client, "{ me { id } }", token=operator)
    operator_id = body["data"]["me"]["id"]
    body = await graphql(
        client,
        "mutation($id: ID!) { updateUser(id: $id, role: ADMIN) { role } }",
        {"id": operator_id},
        admin,
    )
    assert body["data"]["updateUser"]["role"] == "ADMIN"
    response = await client.post(
        "/graphql", json={"query": "{ me { id } }"}, headers={"Authorization": f"Bearer {operator}"}
    )
    assert response.status_code == 401, "the old token carried the old role"
    promoted = await login(client, "operator@example.com")
    body = await graphql(
        client,
        "mutation($id: ID!) { updateUser(id: $id, isActive: false) { id } }",
        {"id": await _bob(client)},
        promoted,
    )
    assert "errors" not in body


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("role: ADMIN", "a customer account cannot become staff; create a staff user"),
        ("", "nothing to change: give role or isActive"),
    ],
)
async def test_admin_user_changes_are_checked(
    client: httpx.AsyncClient, arguments: str, message: str
):
    admin = await login(client, "admin@example.com")
    before = await _snapshot(client)
    query = f"mutation($id: ID!) {{ updateUser(id: $id, {arguments}) {{ id }} }}".replace(
        ", )", ")"
    )
    body = await graphql(client, query, {"id": await _bob(client)}, admin)
    assert body["errors"][0]["message"] == message
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    after = await _snapshot(client)
    assert before["users"] == after["users"]


async def test_profile_update_validates_and_saves(client: httpx.AsyncClient):
    alice = await login(client, "alice@example.com")
    body = await graphql(
        client, 'mutation { updateMyProfile(phone: "+7 (495) 123-45-67") { phone } }', token=alice
    )
    assert body["data"]["updateMyProfile"]["phone"] == "+74951234567"
    body = await graphql(
        client, 'mutation { updateMyProfile(phone: "call me") { phone } }', token=alice
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


# Live updates, over graphql-transport-ws on a served app: an allowed role's subscription
# joins the hub (alice's own ticket, staff naming it), a refused one ends with its code, and
# a socket without a token is closed before any subscription.
SUBSCRIPTIONS = {
    "ticketUpdated": (
        "subscription($ticket: ID) { ticketUpdated(ticketId: $ticket) { change } }",
        {"customer", "operator", "admin"},
    ),
    "ticketMessageAdded": (
        "subscription($ticket: ID!) { ticketMessageAdded(ticketId: $ticket) { eventId } }",
        {"customer", "operator", "admin"},
    ),
    "ticketQueueChanged": ("subscription { ticketQueueChanged { change } }", {"operator", "admin"}),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name", SUBSCRIPTIONS)
async def test_role_against_subscription(
    sqlite_demo_copy: str, signing_key: bytes, role: str, name: str
):
    query, allowed = SUBSCRIPTIONS[name]
    with _serving(_embedded(sqlite_demo_copy, signing_key)) as (base, app, _):
        db = app.state.services.db
        customer_id, user_id = await _customer_of(db, "alice@example.com")
        ticket = await make_ticket(db, Viewer(user_id, Role.CUSTOMER, customer_id))
        variables = {"ticket": to_global_id("Ticket", ticket.id)} if "$ticket" in query else {}
        if role not in LOGINS:
            url = base.replace("http", "ws") + "/graphql"
            async with connect(url, subprotocols=["graphql-transport-ws"]) as ws:
                await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
                assert await _close_code(ws) == (0, 4403)
            return
        token = await _token(base, LOGINS[role])
        async for ws in _subscribed(base, token, query, **variables):
            if role in allowed:
                await _wait_subscribers(app, 1)
            else:
                assert await _error_code(ws) == "FORBIDDEN"


# Mutations whose allowed path needs a setup the rows above do not make yet (a reset
# token, a second session, a device, an admin on the desk). Their refusals are still
# checked for every role, by construction, in test_every_mutation_refuses_the_roles_...;
# this set only shrinks: a mutation added later fails test_every_mutation_has_a_row.
ALLOWED_PATH_PENDING = frozenset(
    {
        "assignTicket",
        "refreshToken",
        "resetPassword",
        "revokeSession",
        "setMyPresence",
        "unregisterPushDevice",
        "updateTicketPriorityRule",
    }
)


def _mutation_fields() -> dict[str, Any]:
    from schema.federation import build_composed

    return dict(build_composed()._schema.mutation_type.fields)


def test_every_mutation_has_a_row():
    """A Mutation field nobody added to the matrix fails here, whoever's domain it is."""
    missing = set(_mutation_fields()) - set(MUTATIONS) - set(QUERIES) - ALLOWED_PATH_PENDING
    assert not missing, f"add these mutations to MUTATIONS: {sorted(missing)}"
    stale = ALLOWED_PATH_PENDING & (set(MUTATIONS) | set(QUERIES))
    assert not stale, f"in the matrix now: take them out of ALLOWED_PATH_PENDING: {stale}"


def test_the_matrix_agrees_with_the_permission_table():
    """A row may allow fewer roles than the declaration (object rules narrow it), never
    more: the table is what the guard enforces."""
    mutations = _mutation_fields()
    for name, (_query, allowed) in {**MUTATIONS, **QUERIES}.items():
        if name not in mutations:
            continue  # a query row may reach its field by another type (me { customer ... })
        access = access_for("Mutation", name)
        assert access is not None, f"Mutation.{name} is declared by no domain"
        declared = {role for role in ROLES if role_may(access, _ROLE.get(role))}
        assert allowed <= declared, (name, allowed, declared)


_ROLE = {"customer": Role.CUSTOMER, "operator": Role.OPERATOR, "admin": Role.ADMIN}


def _placeholder(kind: Any) -> Any:
    """A value of a GraphQL input type, to pass validation; the guard refuses first."""
    kind = get_nullable_type(kind)
    if isinstance(kind, GraphQLList):
        return []
    if isinstance(kind, GraphQLEnumType):
        return next(iter(kind.values))
    if isinstance(kind, GraphQLInputObjectType):
        return {
            name: _placeholder(field.type)
            for name, field in kind.fields.items()
            if is_non_null_type(field.type) and field.default_value is Undefined
        }
    return {"Int": 1, "Float": 1.0, "Boolean": True, "Date": "2099-01-01"}.get(
        kind.name, "2099-01-01T00:00:00Z" if kind.name == "DateTime" else "1"
    )


def _generated(name: str, field: Any) -> tuple[str, dict[str, Any]]:
    """`name` called with its required arguments as variables, selecting `__typename`."""
    required = {arg: spec for arg, spec in field.args.items() if is_non_null_type(spec.type)}
    declared = "".join(f", ${arg}: {spec.type}" for arg, spec in required.items())
    passed = ", ".join(f"{arg}: ${arg}" for arg in required)
    returns = get_named_type(field.type)
    selection = " { __typename }" if isinstance(returns, GraphQLObjectType) else ""
    head = f"mutation M({declared[2:]})" if declared else "mutation M"
    call = f"{name}({passed})" if passed else name
    variables = {arg: _placeholder(spec.type) for arg, spec in required.items()}
    return f"{head} {{ {call}{selection} }}", variables


_REFUSALS = [
    (name, role)
    for name in sorted(_mutation_fields())
    for role in ROLES
    if not role_may(access_for("Mutation", name), _ROLE.get(role))  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("name", "role"), _REFUSALS)
async def test_every_mutation_refuses_the_roles_its_declaration_excludes(
    client: httpx.AsyncClient, name: str, role: str
):
    """Generated from the schema: every Mutation field, every role its declared access
    excludes; refused before anything runs, no trace, no audit row."""
    query, variables = _generated(name, _mutation_fields()[name])
    token = await login(client, LOGINS[role]) if role in LOGINS else None
    before = await _snapshot(client)
    body = await graphql(client, query, variables, token)
    expected = "UNAUTHENTICATED" if role == "anonymous" else "FORBIDDEN"
    assert [e["extensions"]["code"] for e in body.get("errors", [])] == [expected], body
    assert await _snapshot(client) == before
