"""Passwords: the policy, changing one's password, and the reset flow through the outbox."""

import json
import secrets
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from domains.errors import InvalidInput
from domains.identity.password_reset import reset_link_token
from domains.identity.passwords import check_password_policy, hash_password, verify_password
from domains.outbox import OutboxEvent, record_event
from resolvers.relay import pk_of
from tests.test_sessions import PASSWORD, Portal, Portals, embedded_only, portals_fixtures

sqlite_template, backend, portals = portals_fixtures()

CHANGE = """mutation($current: String!, $new: String!) {
  changePassword(currentPassword: $current, newPassword: $new)
}"""
REQUEST = "mutation($email: String!) { requestPasswordReset(email: $email) }"
RESET = """mutation($token: String!, $password: String!) {
  resetPassword(token: $token, newPassword: $password)
}"""
NEW_PASSWORD = "a new and longer passphrase"


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short", "the password must be at least 10 characters"),
        ("x" * 1025, "the password must be at most 1024 characters"),
        ("Jane.Doe@Example.com", "the password must not be your email address"),
        ("jane.doe.x", None),  # merely contains the name: allowed
        ("ДесятьБукв", None),  # ten characters in any script
        ("          ", None),  # no composition rules (NIST 800-63B)
    ],
)
def test_password_policy(password: str, message: str | None):
    if message is None:
        check_password_policy(password, "jane.doe@example.com")
        return
    with pytest.raises(InvalidInput) as raised:
        check_password_policy(password, "jane.doe@example.com")
    assert raised.value.message == message
    assert raised.value.code == "BAD_USER_INPUT"


def test_local_part_of_the_email_is_refused_too():
    with pytest.raises(InvalidInput, match="email address"):
        check_password_policy("Jonathan.Q.Public", "jonathan.q.public@example.com")


def test_hashes_are_argon2id_at_owasp_cost_or_more():
    encoded = hash_password("correct horse battery")
    assert encoded.startswith("$argon2id$v=19$m=19456,t=3,p=1$")
    assert verify_password(encoded, "correct horse battery")
    assert not verify_password(encoded, "wrong horse battery")
    assert not verify_password(None, "correct horse battery")


async def outbox(portal: Portal, event_type: str, subject: str) -> list[dict[str, Any]]:
    async with portal.services.db.connect() as conn:
        stmt = (
            select(OutboxEvent.payload)
            .where(OutboxEvent.type == event_type, OutboxEvent.subject == subject)
            .order_by(OutboxEvent.occurred_at)
        )
        return list((await conn.execute(stmt)).scalars())


def link_token(portal: Portal, event: dict[str, Any]) -> str:
    """What the notification service puts in the email: derived, never read from the event."""
    return reset_link_token(portal.services.auth.reset_link_key, uuid.UUID(event["reset_id"]))


async def user_id_of(portal: Portal, email: str) -> int:
    login = await portal.login(email)
    me = await portal.data("{ me { id } }", token=login["access_token"])
    return pk_of(me["me"]["id"], "User")


async def test_change_password_needs_the_current_one_and_ends_other_sessions(
    portals: Portals,
):
    portal = await portals.open()
    email = await portal.user()
    current, other = await portal.login(email), await portal.login(email)
    token = current["access_token"]

    wrong = await portal.graphql(CHANGE, {"current": "not it at all", "new": NEW_PASSWORD}, token)
    assert wrong.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert wrong.json()["errors"][0]["message"] == "the current password is wrong"
    weak = await portal.graphql(CHANGE, {"current": PASSWORD, "new": "short"}, token)
    assert weak.json()["errors"][0]["message"] == "the password must be at least 10 characters"
    assert await portal.signed_in(other["access_token"])  # refusals change nothing

    changed = await portal.data(CHANGE, {"current": PASSWORD, "new": NEW_PASSWORD}, token)

    assert changed == {"changePassword": True}
    assert await portal.signed_in(token)
    assert not await portal.signed_in(other["access_token"])
    old = await portal.client.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert old.status_code == 401
    await portal.login(email, NEW_PASSWORD)
    anonymous = await portal.error_code(CHANGE, {"current": PASSWORD, "new": NEW_PASSWORD})
    assert anonymous == "UNAUTHENTICATED"


async def test_password_reset_end_to_end_through_the_outbox(portals: Portals):
    portal = await portals.open()
    email = await portal.user()
    session = await portal.login(email)
    user_id = await user_id_of(portal, email)

    assert await portal.data(REQUEST, {"email": email.upper()}) == {"requestPasswordReset": True}

    [event] = await outbox(portal, "identity.password_reset_requested", f"user:{user_id}")
    assert event["version"] == 2
    assert event["email"] == email
    token = link_token(portal, event)
    assert len(token) >= 43
    assert token not in json.dumps(event)  # the event names the request, not the link

    assert await portal.data(RESET, {"token": token, "password": NEW_PASSWORD}) == {
        "resetPassword": True
    }

    assert not await portal.signed_in(session["access_token"])
    status = await portal.client.post(
        "/auth/refresh", json={"refresh_token": session["refresh_token"]}
    )
    assert status.status_code == 401
    await portal.login(email, NEW_PASSWORD)
    [changed] = await outbox(portal, "identity.password_changed", f"user:{user_id}")
    assert changed == {"version": 1, "user_id": user_id, "email": email, "by": "reset"}
    # Single use.
    again = await portal.graphql(RESET, {"token": token, "password": "yet another passphrase"})
    assert again.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    await portal.login(email, NEW_PASSWORD)


async def test_reset_tokens_expire(portals: Portals):
    portal = await portals.open(password_reset_ttl=timedelta(milliseconds=300))
    email = await portal.user()
    user_id = await user_id_of(portal, email)
    await portal.data(REQUEST, {"email": email})
    [event] = await outbox(portal, "identity.password_reset_requested", f"user:{user_id}")

    portals.clock.advance(timedelta(milliseconds=300))

    expired = await portal.graphql(
        RESET, {"token": link_token(portal, event), "password": NEW_PASSWORD}
    )
    assert expired.json()["errors"][0] == {
        "message": "this password-reset link is invalid, used or expired",
        "locations": [{"line": 2, "column": 3}],
        "path": ["resetPassword"],
        "extensions": {"code": "BAD_USER_INPUT"},
    }
    await portal.login(email)  # the old password still works


async def test_a_new_reset_request_voids_the_earlier_link(portals: Portals):
    portal = await portals.open()
    email = await portal.user()
    user_id = await user_id_of(portal, email)
    await portal.data(REQUEST, {"email": email})
    await portal.data(REQUEST, {"email": email})
    first, second = await outbox(portal, "identity.password_reset_requested", f"user:{user_id}")

    code = await portal.error_code(
        RESET, {"token": link_token(portal, first), "password": NEW_PASSWORD}
    )

    assert code == "BAD_USER_INPUT"
    assert await portal.data(RESET, {"token": link_token(portal, second), "password": NEW_PASSWORD})


async def test_a_weak_new_password_does_not_spend_the_reset_token(portals: Portals):
    portal = await portals.open()
    email = await portal.user()
    user_id = await user_id_of(portal, email)
    await portal.data(REQUEST, {"email": email})
    [event] = await outbox(portal, "identity.password_reset_requested", f"user:{user_id}")

    weak = await portal.graphql(RESET, {"token": link_token(portal, event), "password": email})

    assert weak.json()["errors"][0]["message"] == "the password must not be your email address"
    assert await portal.data(RESET, {"token": link_token(portal, event), "password": NEW_PASSWORD})


async def test_reset_request_answers_the_same_for_unknown_emails(portals: Portals):
    portal = await portals.open()
    known = await portal.user()
    unknown = portal.stranger()

    answers = [await portal.graphql(REQUEST, {"email": email}) for email in (known, unknown)]

    assert answers[0].json() == answers[1].json() == {"data": {"requestPasswordReset": True}}
    assert answers[0].headers["content-length"] == answers[1].headers["content-length"]
    async with portal.services.db.connect() as conn:
        stmt = select(OutboxEvent.payload).where(
            OutboxEvent.type == "identity.password_reset_requested"
        )
        emails = {payload["email"] for payload in (await conn.execute(stmt)).scalars()}
    assert known in emails
    assert unknown not in emails


@embedded_only
async def test_reset_with_unknown_tokens_is_refused(portals: Portals):
    portal = await portals.open()
    for token in ("", "x" * 600, "made-up-token"):
        code = await portal.error_code(RESET, {"token": token, "password": NEW_PASSWORD})
        assert code == "BAD_USER_INPUT"


async def test_record_event_writes_in_the_callers_transaction(portals: Portals):
    portal = await portals.open()
    db = portal.services.db
    subject = f"test:{secrets.token_hex(4)}"

    async def failing_change() -> None:
        async with db.transaction() as tx:
            await record_event(tx, "test.rolled_back", subject, {"version": 1})
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        await failing_change()
    async with db.transaction() as tx:
        event_id = await record_event(tx, "test.committed", subject, {"version": 2, "n": 1})
    stmt = select(
        OutboxEvent.id, OutboxEvent.type, OutboxEvent.payload, OutboxEvent.published_at
    ).where(OutboxEvent.subject == subject)
    async with db.connect() as conn:
        rows = [tuple(row) for row in await conn.execute(stmt)]
    assert rows == [(event_id, "test.committed", {"version": 2, "n": 1}, None)]
    async with db.transaction() as tx:
        with pytest.raises(ValueError, match="version"):
            await record_event(tx, "test.unversioned", subject, {"n": 1})


async def test_guessing_the_current_password_counts_as_sign_in_attempts(portals: Portals):
    portal = await portals.open(login_attempts_per_account_and_ip=3)
    email = await portal.user()
    token = (await portal.login(email))["access_token"]  # a success: not counted
    for _ in range(3):
        guess = {"current": "guess 1234", "new": NEW_PASSWORD}
        assert await portal.error_code(CHANGE, guess, token) == "BAD_USER_INPUT"

    body = (await portal.graphql(CHANGE, {"current": PASSWORD, "new": NEW_PASSWORD}, token)).json()

    assert body["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert body["errors"][0]["extensions"]["retryAfter"] > 0


async def test_reset_requests_are_limited_per_email_known_or_not(portals: Portals):
    portal = await portals.open(login_attempts_per_account_and_ip=1)
    for email in (await portal.user(), portal.stranger()):
        assert await portal.data(REQUEST, {"email": email})
        assert await portal.error_code(REQUEST, {"email": email}) == "RATE_LIMITED"
