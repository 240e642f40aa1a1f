"""Support over GraphQL on the demo data: createTicket, a customer's tickets by every path
(ticket, node, _entities), the staff queue and its filters, assignTicket, setMyPresence and
going offline at logout, the priority rules and operators for admins."""

from collections.abc import AsyncIterator

import httpx
import pytest_asyncio

from gateway.app import create_app
from resolvers.relay import to_global_id
from tests.conftest import app_client, graphql, login, make_settings

CREATE = """
mutation($input: CreateTicketInput!) {
  createTicket(input: $input) { id subject status priority channel category
    firstResponseDueAt customer { contractNum } }
}
"""
STAFF_VIEW = """
query($id: ID!) {
  ticket(id: $id) { status assignee { email }
    assignments { operator { email } assignedBy { email } reason }
    priorityRule { description condition setPriority } }
}
"""
SAVE_OPERATOR = """
mutation($user: ID!, $skills: [TicketCategory!], $capacity: Int) {
  saveSupportOperator(userId: $user, skills: $skills, capacity: $capacity) {
    user { email } presence capacity openTickets skills }
}
"""
PRESENCE = """
mutation($presence: OperatorPresence!) {
  setMyPresence(presence: $presence) { presence openTickets user { email } }
}
"""
QUEUE = """
query($status: [TicketStatus!], $priority: [TicketPriority!], $category: [TicketCategory!],
      $assignee: ID, $unassigned: Boolean, $first: Int, $after: String) {
  ticketQueue(status: $status, priority: $priority, category: $category, assigneeId: $assignee,
              unassigned: $unassigned, first: $first, after: $after) {
    edges { node { id subject priority } } pageInfo { hasNextPage endCursor } }
}
"""


@pytest_asyncio.fixture
async def client(sqlite_demo_copy: str, signing_key: bytes) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        sqlite_demo_copy,
        signing_key,
        session_check_cache_seconds=0,
        login_attempts_per_account_and_ip=1000,
        login_attempts_per_account=1000,
    )
    async for http in app_client(create_app(settings)):
        yield http


def _codes(answer: dict) -> list[str]:
    return [error["extensions"]["code"] for error in answer.get("errors", [])]


async def _user_id(client: httpx.AsyncClient, token: str) -> str:
    return (await graphql(client, "{ me { id } }", token=token))["data"]["me"]["id"]


async def _open(client: httpx.AsyncClient, token: str, **given: object) -> dict:
    values = {"category": "BILLING", "subject": "Charged twice", "body": "In November.", **given}
    answer = await graphql(client, CREATE, {"input": values}, token)
    assert "errors" not in answer, answer
    return answer["data"]["createTicket"]


async def test_a_customer_opens_a_ticket_and_only_they_read_it(client: httpx.AsyncClient):
    alice = await login(client, "alice@example.com")
    ticket = await _open(client, alice, channel="MOBILE", category="MOVING")
    assert (ticket["status"], ticket["priority"], ticket["channel"], ticket["category"]) == (
        "NEW",
        "LOW",
        "MOBILE",
        "MOVING",
    )
    assert ticket["firstResponseDueAt"] is not None
    bob = await login(client, "bob@example.com")
    for query in (
        "query($id: ID!) { ticket(id: $id) { subject } }",
        "query($id: ID!) { node(id: $id) { ... on Ticket { subject } } }",
    ):
        assert _codes(await graphql(client, query, {"id": ticket["id"]}, bob)) == ["NOT_FOUND"]
        mine = await graphql(client, query, {"id": ticket["id"]}, alice)
        assert "errors" not in mine, mine
    response = await client.post(
        "/subgraphs/support/graphql",
        json={
            "query": "query($r: [_Any!]!) { _entities(representations: $r)"
            " { ... on Ticket { subject } } }",
            "variables": {"r": [{"__typename": "Ticket", "id": ticket["id"]}]},
        },
        headers={"Authorization": f"Bearer {bob}"},
    )
    entities = response.json()
    assert entities["data"]["_entities"] == [None]
    assert _codes(entities) == ["NOT_FOUND"]
    # Staff-only parts of a ticket are refused to its customer.
    assert _codes(await graphql(client, STAFF_VIEW, {"id": ticket["id"]}, alice)) == ["FORBIDDEN"]


async def test_bad_input_over_graphql(client: httpx.AsyncClient):
    alice = await login(client, "alice@example.com")
    for given, code in (
        ({"subject": ""}, "BAD_USER_INPUT"),
        ({"body": "x" * 10_001}, "BAD_USER_INPUT"),
        ({"channel": "STAFF"}, "BAD_USER_INPUT"),
        ({"contractId": to_global_id("Contract", 2**40)}, "NOT_FOUND"),
    ):
        values = {"category": "BILLING", "subject": "S", "body": "B", **given}
        answer = await graphql(client, CREATE, {"input": values}, alice)
        assert _codes(answer) == [code], (given, answer)
    answer = await graphql(
        client, CREATE, {"input": {"category": "WEATHER", "subject": "S", "body": "B"}}, alice
    )
    assert _codes(answer) == ["BAD_USER_INPUT"]


async def test_an_operator_comes_online_takes_the_queue_and_goes_offline_at_logout(
    client: httpx.AsyncClient,
):
    admin = await login(client, "admin@example.com")
    operator = await login(client, "operator@example.com")
    operator_id = await _user_id(client, operator)
    alice = await login(client, "alice@example.com")
    queued = await _open(client, alice, category="EQUIPMENT")
    saved = await graphql(
        client,
        SAVE_OPERATOR,
        {"user": operator_id, "skills": ["EQUIPMENT", "BILLING"], "capacity": 2},
        admin,
    )
    assert saved["data"]["saveSupportOperator"] == {
        "user": {"email": "operator@example.com"},
        "presence": "OFFLINE",
        "capacity": 2,
        "openTickets": 0,
        "skills": ["BILLING", "EQUIPMENT"],
    }
    online = await graphql(client, PRESENCE, {"presence": "ONLINE"}, operator)
    assert online["data"]["setMyPresence"]["openTickets"] == 1
    view = await graphql(client, STAFF_VIEW, {"id": queued["id"]}, operator)
    assert view["data"]["ticket"]["assignee"] == {"email": "operator@example.com"}
    assert view["data"]["ticket"]["assignments"] == [
        {"operator": {"email": "operator@example.com"}, "assignedBy": None, "reason": "QUEUE"}
    ]
    assert view["data"]["ticket"]["priorityRule"]["condition"] == "CATEGORY"
    # Online: the next ticket is theirs at once.
    fresh = await _open(client, alice)
    view = await graphql(client, STAFF_VIEW, {"id": fresh["id"]}, admin)
    assert view["data"]["ticket"]["assignments"][0]["reason"] == "AUTO"
    # Logging out of their only session takes them offline.
    logout = await graphql(client, "mutation { logout }", token=operator)
    assert "errors" not in logout, logout
    listed = await graphql(
        client, "{ supportOperators { edges { node { presence user { email } } } } }", token=admin
    )
    [node] = [edge["node"] for edge in listed["data"]["supportOperators"]["edges"]]
    assert node == {"presence": "OFFLINE", "user": {"email": "operator@example.com"}}


async def test_staff_reassign_over_graphql(client: httpx.AsyncClient):
    admin = await login(client, "admin@example.com")
    admin_id = await _user_id(client, admin)
    operator = await login(client, "operator@example.com")
    operator_id = await _user_id(client, operator)
    for user_id in (admin_id, operator_id):
        await graphql(client, SAVE_OPERATOR, {"user": user_id, "skills": ["BILLING"]}, admin)
    alice = await login(client, "alice@example.com")
    ticket = await _open(client, alice)  # nobody online: queued
    assign = """mutation($t: ID!, $o: ID!) { assignTicket(ticketId: $t, operatorId: $o)
        { assignee { email } } }"""
    first = await graphql(client, assign, {"t": ticket["id"], "o": operator_id}, admin)
    assert first["data"]["assignTicket"]["assignee"] == {"email": "operator@example.com"}
    again = await graphql(client, assign, {"t": ticket["id"], "o": admin_id}, operator)
    assert again["data"]["assignTicket"]["assignee"] == {"email": "admin@example.com"}
    view = await graphql(client, STAFF_VIEW, {"id": ticket["id"]}, admin)
    assert [
        (each["operator"]["email"], each["assignedBy"]["email"], each["reason"])
        for each in view["data"]["ticket"]["assignments"]
    ] == [
        ("operator@example.com", "admin@example.com", "MANUAL"),
        ("admin@example.com", "operator@example.com", "MANUAL"),
    ]
    assert _codes(await graphql(client, assign, {"t": ticket["id"], "o": admin_id}, alice)) == [
        "FORBIDDEN"
    ]


async def test_the_queue_filters_and_pages(client: httpx.AsyncClient):
    alice = await login(client, "alice@example.com")
    bob = await login(client, "bob@example.com")
    opened = [
        await _open(client, alice, category="MOVING", subject="One"),
        await _open(client, bob, category="BILLING", subject="Two"),
        await _open(client, alice, category="NO_CONNECTION", subject="Three"),
        await _open(client, bob, category="BILLING", subject="Four"),
    ]
    operator = await login(client, "operator@example.com")

    async def subjects(**variables: object) -> list[str]:
        answer = await graphql(client, QUEUE, variables, operator)
        assert "errors" not in answer, answer
        return [edge["node"]["subject"] for edge in answer["data"]["ticketQueue"]["edges"]]

    assert await subjects(unassigned=True) == ["One", "Two", "Three", "Four"]
    assert await subjects(category=["BILLING"]) == ["Two", "Four"]
    assert await subjects(priority=["LOW"], status=["NEW"]) == ["One"]
    # No connection, and alice's second ticket today: two steps up.
    assert await subjects(priority=["URGENT"], category=["NO_CONNECTION", "MOVING"]) == ["Three"]
    assert await subjects(assignee=to_global_id("User", 1)) == []
    first = await graphql(client, QUEUE, {"first": 3}, operator)
    page = first["data"]["ticketQueue"]
    assert [edge["node"]["id"] for edge in page["edges"]] == [t["id"] for t in opened[:3]]
    assert page["pageInfo"]["hasNextPage"] is True
    rest = await subjects(first=3, after=page["pageInfo"]["endCursor"])
    assert rest == ["Four"]
    both = await graphql(
        client, QUEUE, {"unassigned": True, "assignee": to_global_id("User", 1)}, operator
    )
    assert _codes(both) == ["BAD_USER_INPUT"]
    assert _codes(await graphql(client, QUEUE, {}, alice)) == ["FORBIDDEN"]


async def test_admins_read_and_edit_the_priority_rules(client: httpx.AsyncClient):
    admin = await login(client, "admin@example.com")
    listed = await graphql(
        client,
        "{ ticketPriorityRules { id position condition category setPriority raiseSteps"
        " withinDays enabled } }",
        token=admin,
    )
    rules = listed["data"]["ticketPriorityRules"]
    assert [rule["position"] for rule in rules] == sorted(rule["position"] for rule in rules)
    [repeat] = [rule for rule in rules if rule["condition"] == "REPEAT_TICKET"]
    assert (repeat["withinDays"], repeat["raiseSteps"], repeat["setPriority"]) == (7, 1, None)
    edit = """mutation($id: ID!, $input: TicketPriorityRuleInput!) {
        updateTicketPriorityRule(id: $id, input: $input) { withinDays raiseSteps category } }"""
    changed = await graphql(
        client,
        edit,
        {"id": repeat["id"], "input": {"withinDays": 3, "raiseSteps": 2, "category": "BILLING"}},
        admin,
    )
    assert changed["data"]["updateTicketPriorityRule"] == {
        "withinDays": 3,
        "raiseSteps": 2,
        "category": "BILLING",
    }
    cleared = await graphql(client, edit, {"id": repeat["id"], "input": {"category": None}}, admin)
    assert cleared["data"]["updateTicketPriorityRule"]["category"] is None
    operator = await login(client, "operator@example.com")
    refused = await graphql(
        client, edit, {"id": repeat["id"], "input": {"enabled": False}}, operator
    )
    assert _codes(refused) == ["FORBIDDEN"]
    bad = await graphql(client, edit, {"id": repeat["id"], "input": {"raiseSteps": 9}}, admin)
    assert _codes(bad) == ["BAD_USER_INPUT"]


async def test_presence_stays_while_another_session_lives(client: httpx.AsyncClient):
    admin = await login(client, "admin@example.com")
    phone = await login(client, "operator@example.com")
    desk = await login(client, "operator@example.com")
    operator_id = await _user_id(client, desk)
    await graphql(client, SAVE_OPERATOR, {"user": operator_id, "skills": ["OTHER"]}, admin)
    await graphql(client, PRESENCE, {"presence": "ONLINE"}, desk)
    listing = "{ supportOperators { edges { node { presence } } } }"

    async def presence() -> str:
        answer = await graphql(client, listing, token=admin)
        [edge] = answer["data"]["supportOperators"]["edges"]
        return edge["node"]["presence"]

    await graphql(client, "mutation { logout }", token=phone)
    assert await presence() == "ONLINE"
    await graphql(client, "mutation { logoutEverywhere }", token=desk)
    assert await presence() == "OFFLINE"
