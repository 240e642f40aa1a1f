"""Signing in, and what the gateway does with good, bad and forged access tokens."""

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import OKPKey
from sqlalchemy import func, select

from domains.clock import SYSTEM_CLOCK
from domains.identity.login import account_by_email
from domains.identity.models import Role, Session
from domains.identity.tokens import TokenService, generate_signing_key
from tests.conftest import DEMO_PASSWORD, graphql, login
from tests.test_sessions import PASSWORD, Portals, portals_fixtures

LOGIN = """mutation($email: String!, $password: String!) {
  login(email: $email, password: $password) { accessToken expiresAt user { email role } }
}"""


async def test_login_mutation_and_rest_return_a_working_token(sqlite_demo_client):
    body = await graphql(
        sqlite_demo_client, LOGIN, {"email": "Alice@Example.com ", "password": DEMO_PASSWORD}
    )
    payload = body["data"]["login"]
    assert payload["user"] == {"email": "alice@example.com", "role": "CUSTOMER"}
    me = await graphql(sqlite_demo_client, "{ me { email } }", token=payload["accessToken"])
    assert me["data"]["me"]["email"] == "alice@example.com"

    response = await sqlite_demo_client.post(
        "/auth/login", json={"email": "admin@example.com", "password": DEMO_PASSWORD}
    )
    assert response.status_code == 200
    assert response.json()["user"]["role"] == "admin"
    assert response.json()["token_type"] == "Bearer"


@pytest.mark.parametrize(
    ("email", "password"),
    [("alice@example.com", "wrong-password"), ("nobody@example.com", DEMO_PASSWORD)],
)
async def test_failures_look_the_same_for_unknown_email_and_wrong_password(
    sqlite_demo_client: httpx.AsyncClient, email: str, password: str
):
    body = await graphql(sqlite_demo_client, LOGIN, {"email": email, "password": password})
    assert body == {
        "data": None,
        "errors": [
            {
                "message": "invalid email or password",
                "locations": [{"line": 2, "column": 3}],
                "path": ["login"],
                "extensions": {"code": "UNAUTHENTICATED"},
            }
        ],
    }
    response = await sqlite_demo_client.post(
        "/auth/login", json={"email": email, "password": password}
    )
    assert response.status_code == 401
    assert response.json() == {
        "error": {"code": "UNAUTHENTICATED", "message": "invalid email or password"}
    }


async def test_rest_login_rejects_malformed_bodies(sqlite_demo_client: httpx.AsyncClient):
    response = await sqlite_demo_client.post(
        "/auth/login",
        content=b"email=a",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "CSRF_REJECTED"
    response = await sqlite_demo_client.post("/auth/login", json={"email": "a@example.com"})
    assert response.status_code == 400


def issue(service: TokenService) -> tuple[str, datetime]:
    """A well-formed admin token for a session that does not exist."""
    return service.issue_access_token(
        user_id=1,
        role=Role.ADMIN,
        customer_id=None,
        session_id=uuid.uuid4(),
        not_after=datetime.now(UTC) + timedelta(days=1),
    )


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _forgeries(service: TokenService, signing_key: bytes) -> dict[str, str]:
    good, _ = issue(service)
    header, claims, _signature = good.split(".")
    decoded_claims = json.loads(base64.urlsafe_b64decode(claims + "=="))
    public_pem = OKPKey.import_key(signing_key).as_pem(private=False)
    other = TokenService(
        generate_signing_key(),
        issuer="kabinet",
        audience="kabinet-api",
        access_ttl=timedelta(minutes=5),
        clock=SYSTEM_CLOCK,
    )
    foreign, _ = issue(other)
    # The classic key-confusion attack: HMAC keyed with the server's public key.
    hs_header = _b64({"alg": "HS256", "typ": "at+jwt", "kid": service._signing_key.kid})
    signing_input = f"{hs_header}.{claims}".encode()
    mac = hmac.new(public_pem, signing_input, hashlib.sha256).digest()
    hs256 = f"{hs_header}.{claims}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"
    expired = {**decoded_claims, "exp": decoded_claims["iat"] - 120}
    wrong_audience = {**decoded_claims, "aud": "someone-else"}
    return {
        "alg none": f"{_b64({'alg': 'none', 'typ': 'at+jwt'})}.{claims}.",
        "HS256 signed with the public key": hs256,
        "signed by an unknown key": foreign,
        "tampered claims": f"{header}.{_b64({**decoded_claims, 'sub': '2'})}.{_signature}",
        "expired (re-signed)": _resign(service, expired),
        "wrong audience (re-signed)": _resign(service, wrong_audience),
        "garbage": "not.a.jwt",
    }


def _resign(service: TokenService, claims: dict[str, object]) -> str:
    key = service._signing_key  # the real key: only the claims are wrong
    return jwt.encode(
        {"alg": "Ed25519", "typ": "at+jwt", "kid": key.kid}, claims, key, algorithms=["Ed25519"]
    )


async def test_forged_or_expired_tokens_get_401(sqlite_demo_client: httpx.AsyncClient):
    services = sqlite_demo_client._transport.app.state.services  # type: ignore[attr-defined]
    signing_key = services.settings.signing_key_pem()
    for name, token in _forgeries(services.tokens, signing_key).items():
        response = await sqlite_demo_client.post(
            "/graphql",
            json={"query": "{ me { id } }"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 401, name
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", name
        assert response.headers["www-authenticate"].startswith("Bearer"), name
        rest = await sqlite_demo_client.get(
            "/billing/invoices", headers={"Authorization": f"Bearer {token}"}
        )
        assert rest.status_code == 401, name
        assert rest.json()["error"]["code"] == "UNAUTHENTICATED", name


async def test_jwks_publishes_the_public_key(sqlite_demo_client: httpx.AsyncClient):
    keys = (await sqlite_demo_client.get("/.well-known/jwks.json")).json()["keys"]
    assert len(keys) == 1
    assert keys[0]["kty"] == "OKP"
    assert keys[0]["alg"] == "Ed25519"
    assert "d" not in keys[0]
    token = await login(sqlite_demo_client, "bob@example.com")
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["kid"] == keys[0]["kid"]


# Brute force: every attempt counts, per address, per account and per pair, however it
# arrives; successes are not counted, and nobody can lock an account's owner out.

sqlite_template, backend, portals = portals_fixtures()

LOGIN_ONLY = """mutation($email: String!, $password: String!) {
  login(email: $email, password: $password) { sessionId }
}"""
ACCOUNT_LIMIT = {
    "login_attempts_per_account_and_ip": 5,
    "login_attempts_per_account": 100,
    "login_attempts_per_ip": 100,
}
CLOSED_PORT_URL = "redis://127.0.0.1:1/0"


def error_at(body: dict, path: str) -> dict:
    [error] = [e for e in body.get("errors", []) if e["path"] == [path]]
    return error


async def test_sixth_attempt_on_an_account_is_refused_even_with_the_right_password(
    portals: Portals,
):
    portal = await portals.open(**ACCOUNT_LIMIT)
    email = await portal.user()
    # Spellings of one account are one account.
    for spelling in (email, email.upper(), f"  {email} ", email.title(), email):
        code = await portal.error_code(LOGIN_ONLY, {"email": spelling, "password": "wrong!"})
        assert code == "UNAUTHENTICATED"

    body = (await portal.graphql(LOGIN_ONLY, {"email": email, "password": PASSWORD})).json()

    [error] = body["errors"]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert 0 < error["extensions"]["retryAfter"] <= 15 * 60
    rest = await portal.client.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert rest.status_code == 429
    assert rest.json()["error"]["code"] == "RATE_LIMITED"
    assert 0 < int(rest.headers["retry-after"]) <= 15 * 60
    # Another account from the same address is not affected.
    await portal.login(await portal.user())


async def test_unknown_and_known_accounts_are_limited_alike(portals: Portals):
    portal = await portals.open(**ACCOUNT_LIMIT)
    answers = []
    for email in (await portal.user(), portal.stranger()):
        for _ in range(5):
            await portal.graphql(LOGIN_ONLY, {"email": email, "password": "wrong!"})
        answers.append(
            (await portal.graphql(LOGIN_ONLY, {"email": email, "password": "wrong!"})).json()
        )
    for body in answers:
        body["errors"][0]["extensions"].pop("retryAfter")
    assert answers[0] == answers[1]
    assert answers[0]["errors"][0]["extensions"] == {"code": "RATE_LIMITED"}


async def test_aliased_login_guesses_count_and_stop_at_the_first_wrong_one(portals: Portals):
    portal = await portals.open(**ACCOUNT_LIMIT)
    email = await portal.user()
    fields = " ".join(
        f'a{n}: login(email: "{email}", password: "wrong!") {{ sessionId }}' for n in range(1, 7)
    )
    # `login` is non-null: the first wrong guess ends the mutation, the rest never run.
    for _ in range(5):
        body = (await portal.graphql(f"mutation {{ {fields} }}")).json()
        assert [e["path"] for e in body["errors"]] == [["a1"]]
        assert error_at(body, "a1")["extensions"]["code"] == "UNAUTHENTICATED"

    code = await portal.error_code(LOGIN_ONLY, {"email": email, "password": PASSWORD})
    assert code == "RATE_LIMITED"


async def test_batched_login_operations_in_one_request_each_count(portals: Portals):
    portal = await portals.open(**ACCOUNT_LIMIT)
    email = await portal.user()
    operation = {"query": LOGIN_ONLY, "variables": {"email": email, "password": "wrong!"}}

    response = await portal.client.post("/graphql", json=[operation] * 6)

    codes = [result["errors"][0]["extensions"]["code"] for result in response.json()]
    assert codes == ["UNAUTHENTICATED"] * 5 + ["RATE_LIMITED"]


async def test_one_address_is_limited_across_accounts(portals: Portals):
    portal = await portals.open(login_attempts_per_account_and_ip=3, login_attempts_per_ip=3)
    victim = await portal.user()
    for _ in range(3):
        code = await portal.error_code(
            LOGIN_ONLY, {"email": portal.stranger(), "password": "wrong!"}
        )
        assert code == "UNAUTHENTICATED"

    code = await portal.error_code(LOGIN_ONLY, {"email": victim, "password": PASSWORD})

    assert code == "RATE_LIMITED"
    # The address was refused before the account was counted: its owner signs in elsewhere.
    elsewhere = await portal.elsewhere()
    for _ in range(3):  # the address's whole budget: successes count there
        await elsewhere.login(victim)


async def test_successful_sign_ins_are_not_counted(portals: Portals):
    portal = await portals.open(login_attempts_per_account_and_ip=2, login_attempts_per_account=100)
    email = await portal.user()
    for _ in range(5):
        await portal.login(email)
    # Failures still are, and the right password does not get through past them.
    for _ in range(2):
        code = await portal.error_code(LOGIN_ONLY, {"email": email, "password": "wrong!"})
        assert code == "UNAUTHENTICATED"
    code = await portal.error_code(LOGIN_ONLY, {"email": email, "password": PASSWORD})
    assert code == "RATE_LIMITED"


async def test_guessing_from_many_addresses_cannot_lock_the_owner_out(portals: Portals):
    """The attack: spend a known account's attempts from many addresses, so that its owner
    is refused. Each address still gets only its own few guesses, and fewer once the account
    is under attack; the owner signs in all the same."""
    portal = await portals.open(
        login_attempts_per_account_and_ip=2, login_attempts_per_account=6, login_attempts_per_ip=100
    )
    victim = await portal.user()
    wrong = {"email": victim, "password": "wrong!"}
    # Three addresses spend the account's budget, two guesses each; a third is refused.
    attackers = [await portal.elsewhere() for _ in range(3)]
    for attacker in attackers:
        for _ in range(2):
            assert await attacker.error_code(LOGIN_ONLY, wrong) == "UNAUTHENTICATED"
    for attacker in attackers:
        assert await attacker.error_code(LOGIN_ONLY, wrong) == "RATE_LIMITED"
    # Under attack, every further address gets one guess on this account.
    for _ in range(3):
        attacker = await portal.elsewhere()
        assert [await attacker.error_code(LOGIN_ONLY, wrong) for _ in range(2)] == [
            "UNAUTHENTICATED",
            "RATE_LIMITED",
        ]
    refused = await attacker.client.post("/auth/login", json=wrong)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "RATE_LIMITED"

    # The owner, from their own address, signs in, again and again.
    for _ in range(3):
        await portal.login(victim)
    assert await portal.data(LOGIN_ONLY, {"email": victim, "password": PASSWORD})


async def test_redis_down_refuses_every_sign_in_alike(portals: Portals):
    """The attack: with Redis down and the general policy "open", guess away; a wrong
    password used to answer 401 and the right one 500. Sign-in budgets fail closed, before
    the password is looked at, so both get the same refusal and no session is opened."""
    email = await (await portals.open()).user()
    portal = await portals.open(redis_url=CLOSED_PORT_URL, rate_limit_on_store_failure="open")
    # The general policy still lets other requests through.
    assert await portal.data("{ __typename }") == {"__typename": "Query"}

    answers = []
    for password in ("wrong!", PASSWORD):
        rest = await portal.client.post("/auth/login", json={"email": email, "password": password})
        body = (await portal.graphql(LOGIN_ONLY, {"email": email, "password": password})).json()
        answers.append((rest.status_code, rest.json(), rest.headers["retry-after"], body))

    assert answers[0] == answers[1]
    status, rest_body, _retry_after, graphql_body = answers[0]
    assert status == 429
    assert rest_body["error"]["code"] == "RATE_LIMITED"
    assert graphql_body["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    async with portal.services.db.read() as reader:
        account = await account_by_email(reader, email)
    assert account is not None
    async with portal.services.db.connect() as conn:
        opened = await conn.scalar(
            select(func.count()).select_from(Session).where(Session.user_id == account.id)
        )
    assert opened == 0
