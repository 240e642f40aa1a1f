"""Refresh tokens: single use with rotation, reuse detection, idle expiry, REST and the cookie."""

import asyncio
import hashlib
from datetime import timedelta

from sqlalchemy import select

from domains.identity.models import RefreshToken
from tests.test_sessions import Portal, Portals, embedded_only, portals_fixtures

sqlite_template, backend, portals = portals_fixtures()

REFRESH = """mutation($token: String!) {
  refreshToken(token: $token) { accessToken refreshToken expiresAt sessionId user { email } }
}"""


async def refresh_rest(portal: Portal, token: str) -> tuple[int, dict]:
    response = await portal.client.post("/auth/refresh", json={"refresh_token": token})
    return response.status_code, response.json()


async def test_refresh_rotates_the_pair_and_each_token_works_once(portals: Portals):
    portal = await portals.open()
    email = await portal.user()
    login = await portal.login(email)

    first = (await portal.data(REFRESH, {"token": login["refresh_token"]}))["refreshToken"]

    assert first["sessionId"] == login["session_id"]
    assert first["user"] == {"email": email}
    assert first["refreshToken"] != login["refresh_token"]
    assert first["accessToken"] != login["access_token"]
    assert await portal.signed_in(first["accessToken"])
    status, second = await refresh_rest(portal, first["refreshToken"])
    assert status == 200
    assert second["session_id"] == login["session_id"]
    assert second["token_type"] == "Bearer"
    assert await portal.signed_in(second["access_token"])
    # Still one session: refreshing does not open new ones.
    sessions = await portal.data("{ mySessions { id } }", token=second["access_token"])
    assert sessions == {"mySessions": [{"id": login["session_id"]}]}


async def test_only_the_hash_of_a_refresh_token_is_stored(portals: Portals):
    portal = await portals.open()
    login = await portal.login(await portal.user())
    async with portal.services.db.connect() as conn:
        stored = (await conn.execute(select(RefreshToken.token_hash))).scalars().all()
    assert hashlib.sha256(login["refresh_token"].encode()).hexdigest() in stored
    assert login["refresh_token"] not in stored


async def test_reusing_a_rotated_token_ends_the_family_and_the_session(portals: Portals):
    portal = await portals.open()
    email = await portal.user()
    login = await portal.login(email)
    other = await portal.login(email)  # another device: not part of the family
    status, rotated = await refresh_rest(portal, login["refresh_token"])
    assert status == 200

    status, body = await refresh_rest(portal, login["refresh_token"])

    assert status == 401
    assert body["error"]["code"] == "UNAUTHENTICATED"
    assert "already used" in body["error"]["message"]
    # The thief's and the owner's copies are both dead now, and so is the session.
    assert (await refresh_rest(portal, rotated["refresh_token"]))[0] == 401
    assert not await portal.signed_in(rotated["access_token"])
    assert not await portal.signed_in(login["access_token"])
    assert await portal.signed_in(other["access_token"])
    code = await portal.error_code(REFRESH, {"token": login["refresh_token"]})
    assert code == "UNAUTHENTICATED"


async def test_concurrent_trades_of_one_token_let_one_through_and_end_the_session(
    portals: Portals,
):
    portal = await portals.open()
    login = await portal.login(await portal.user())

    results = await asyncio.gather(
        *(refresh_rest(portal, login["refresh_token"]) for _ in range(3))
    )

    assert sorted(status for status, _ in results) == [200, 401, 401]
    winner = next(body for status, body in results if status == 200)
    assert not await portal.signed_in(winner["access_token"])


async def test_refresh_tokens_expire_when_idle(portals: Portals):
    portal = await portals.open(refresh_token_idle_timeout=timedelta(milliseconds=300))
    login = await portal.login(await portal.user())
    status, fresh = await refresh_rest(portal, login["refresh_token"])
    assert status == 200

    portals.clock.advance(timedelta(milliseconds=300))

    status, body = await refresh_rest(portal, fresh["refresh_token"])
    assert status == 401
    assert body["error"] == {
        "code": "UNAUTHENTICATED",
        "message": "invalid or expired refresh token",
    }
    assert await portal.signed_in(fresh["access_token"])  # the session itself lives on


async def test_refresh_fails_once_the_session_is_ended(portals: Portals):
    portal = await portals.open()
    login = await portal.login(await portal.user())
    await portal.data("mutation { logout }", token=login["access_token"])

    status, body = await refresh_rest(portal, login["refresh_token"])

    assert status == 401
    assert body["error"]["code"] == "UNAUTHENTICATED"


async def test_access_and_refresh_tokens_cannot_stand_in_for_each_other(portals: Portals):
    portal = await portals.open()
    login = await portal.login(await portal.user())

    status, _ = await refresh_rest(portal, login["access_token"])
    assert status == 401
    assert not await portal.signed_in(login["refresh_token"])
    # Neither attempt harmed the session.
    assert await portal.signed_in(login["access_token"])
    assert (await refresh_rest(portal, login["refresh_token"]))[0] == 200


@embedded_only
async def test_rest_refresh_rejects_bad_requests_with_json_errors(portals: Portals):
    portal = await portals.open()
    cases = [
        # No token at all is a missing credential, as an unknown one (the body's field is
        # optional in the contract: the cookie may carry it).
        ({"json": {}}, 401, "UNAUTHENTICATED"),
        ({"json": {"refresh_token": 42}}, 400, "BAD_USER_INPUT"),
        ({"json": {"refresh_token": "not-a-token"}}, 401, "UNAUTHENTICATED"),
        ({"json": {"refresh_token": ""}}, 401, "UNAUTHENTICATED"),
        ({"content": b"refresh_token=x"}, 400, "CSRF_REJECTED"),
    ]
    for request, status, code in cases:
        response = await portal.client.post("/auth/refresh", **request)
        assert response.status_code == status, request
        assert response.json()["error"]["code"] == code, request


@embedded_only
async def test_refresh_cookie_is_host_only_secure_and_read_on_refresh(portals: Portals):
    portal = await portals.open(refresh_cookie=True)
    email = await portal.user()
    response = await portal.client.post(
        "/auth/login", json={"email": email, "password": "correct horse battery"}
    )
    cookie = response.headers["set-cookie"]
    token = response.json()["refresh_token"]
    assert cookie.startswith(f"__Host-kabinet_refresh={token};")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "secure", "path", "samesite", "max-age"} <= attributes
    assert "domain" not in attributes
    assert "samesite=strict" in cookie.lower()
    assert "path=/;" in cookie.lower() + ";"
    portal.client.cookies.clear()

    def with_cookie(value: str) -> dict[str, str]:
        return {"Cookie": f"__Host-kabinet_refresh={value}"}

    from_cookie = await portal.client.post("/auth/refresh", json={}, headers=with_cookie(token))
    assert from_cookie.status_code == 200
    rotated = from_cookie.json()["refresh_token"]
    assert f"__Host-kabinet_refresh={rotated};" in from_cookie.headers["set-cookie"]
    # The body wins over the cookie, in both directions.
    body_wins = await portal.client.post(
        "/auth/refresh", json={"refresh_token": rotated}, headers=with_cookie("garbage")
    )
    assert body_wins.status_code == 200
    newest = body_wins.json()["refresh_token"]
    body_still_wins = await portal.client.post(
        "/auth/refresh", json={"refresh_token": "garbage"}, headers=with_cookie(newest)
    )
    assert body_still_wins.status_code == 401
    # Logout clears the cookie.
    access = body_wins.json()["access_token"]
    out = await portal.client.post("/auth/logout", headers={"Authorization": f"Bearer {access}"})
    assert out.status_code == 204
    assert out.headers["set-cookie"].startswith('__Host-kabinet_refresh="";')


@embedded_only
async def test_cookie_is_ignored_unless_enabled(portals: Portals):
    portal = await portals.open()
    login = await portal.login(await portal.user())
    response = await portal.client.post(
        "/auth/refresh",
        json={},
        headers={"Cookie": f"__Host-kabinet_refresh={login['refresh_token']}"},
    )
    assert response.status_code == 401  # no token is read: as if none were sent
    assert "set-cookie" not in response.headers
