"""Access tokens (RFC 8725): what is checked, forged headers and claims, and key rotation.

Each forgery below is a real, live session's token with one thing wrong, signed with the
server's own key unless the point is the signature, so a 401 can only come from that one
defect.
"""

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import OKPKey

from domains.clock import SYSTEM_CLOCK
from domains.errors import Unauthenticated
from domains.identity.models import Role
from domains.identity.tokens import TokenService, generate_signing_key
from tests.test_sessions import Portal, Portals, embedded_only, portals_fixtures

sqlite_template, backend, portals = portals_fixtures()

Token = dict[str, Any]  # {"header": ..., "claims": ...}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def part(data: dict[str, Any]) -> str:
    return b64(json.dumps(data).encode())


def unpack(token: str) -> Token:
    header, claims, _ = token.split(".")
    return {
        "header": json.loads(base64.urlsafe_b64decode(header + "==")),
        "claims": json.loads(base64.urlsafe_b64decode(claims + "==")),
    }


def sign(header: dict[str, Any], claims: dict[str, Any], key: OKPKey) -> str:
    """Any header at all, Ed25519-signed: joserfc would refuse to write the odd ones."""
    signing_input = f"{part(header)}.{part(claims)}"
    return f"{signing_input}.{b64(key.private_key.sign(signing_input.encode()))}"


def service_key(portal: Portal) -> OKPKey:
    return portal.services.tokens._signing_key


def header_change(**changes: Any) -> Callable[[Token, OKPKey], str]:
    def forge(token: Token, key: OKPKey) -> str:
        header = {**token["header"], **changes}
        return sign({k: v for k, v in header.items() if v is not None}, token["claims"], key)

    return forge


def claims_change(**changes: Any) -> Callable[[Token, OKPKey], str]:
    def forge(token: Token, key: OKPKey) -> str:
        claims = {**token["claims"], **changes}
        return sign(token["header"], {k: v for k, v in claims.items() if v is not None}, key)

    return forge


def alg_none(token: Token, _key: OKPKey) -> str:
    return f"{part({**token['header'], 'alg': 'none'})}.{part(token['claims'])}."


def hs256_with_the_public_key(token: Token, key: OKPKey) -> str:
    """The key-confusion attack: an HMAC keyed with the server's published public key."""
    signing_input = f"{part({**token['header'], 'alg': 'HS256'})}.{part(token['claims'])}"
    public_pem = key.as_pem(private=False)
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def attackers_key(token: Token, _key: OKPKey) -> str:
    attacker = OKPKey.generate_key("Ed25519")
    return sign({**token["header"], "kid": attacker.thumbprint()}, token["claims"], attacker)


def attackers_embedded_jwk(token: Token, _key: OKPKey) -> str:
    """Signed by the attacker, who ships the public key along: it must not be trusted."""
    attacker = OKPKey.generate_key("Ed25519")
    header = {**token["header"], "jwk": attacker.as_dict(private=False)}
    return sign(header, token["claims"], attacker)


def own_embedded_jwk(token: Token, key: OKPKey) -> str:
    """Even the right key, when the token names it itself, is refused: no key from tokens."""
    return sign({**token["header"], "jwk": key.as_dict(private=False)}, token["claims"], key)


def tampered(token: Token, key: OKPKey) -> str:
    good = sign(token["header"], token["claims"], key)
    return f"{good.split('.')[0]}.{part({**token['claims'], 'role': 'admin'})}.{good.split('.')[2]}"


NOW = int(time.time())
FORGERIES: dict[str, Callable[[Token, OKPKey], str]] = {
    "alg none": alg_none,
    "HS256 signed with the public key": hs256_with_the_public_key,
    "signed by an unknown key": attackers_key,
    "attacker's key embedded as jwk": attackers_embedded_jwk,
    "tampered claims": tampered,
    "unknown kid": header_change(kid="some-other-key"),
    "no kid": header_change(kid=None),
    "jku header": header_change(jku="https://evil.example/jwks.json"),
    "x5u header": header_change(x5u="https://evil.example/cert.pem"),
    "jwk header (server's own key)": own_embedded_jwk,
    "x5c header": header_change(x5c=["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]),
    "crit header": header_change(crit=["exp"]),
    "typ missing": header_change(typ=None),
    "typ JWT": header_change(typ="JWT"),
    "typ of another token kind": header_change(typ="rt+jwt"),
    "alg EdDSA (not the one accepted)": header_change(alg="EdDSA"),
    "wrong issuer": claims_change(iss="someone-else"),
    "no issuer": claims_change(iss=None),
    "wrong audience": claims_change(aud="another-api"),
    "audience list without ours": claims_change(aud=["another-api"]),
    "expired": claims_change(exp=NOW - 120),
    "no exp": claims_change(exp=None),
    "not yet valid": claims_change(nbf=NOW + 3600),
    "no nbf": claims_change(nbf=None),
    "issued in the future": claims_change(iat=NOW + 3600),
    "no iat": claims_change(iat=None),
    "no jti": claims_change(jti=None),
    "no session": claims_change(sid=None),
    "session id not a uuid": claims_change(sid="1"),
    "another, unknown session": claims_change(sid=str(uuid.uuid4())),
    "subject not a user id": claims_change(sub="alice"),
    "unknown role": claims_change(role="root"),
}


@embedded_only
async def test_forged_tokens_get_401_and_the_genuine_one_passes(portals: Portals):
    portal = await portals.open()
    login = await portal.login(await portal.user())
    token = unpack(login["access_token"])
    key = service_key(portal)
    assert token["header"] == {"alg": "Ed25519", "typ": "at+jwt", "kid": key.kid}
    assert token["claims"]["sid"] == login["session_id"]
    # The re-signing itself is faithful: unchanged, the token still works.
    assert await portal.signed_in(header_change()(token, key))

    for name, forge in FORGERIES.items():
        forged = forge(token, key)
        assert not await portal.signed_in(forged), name
        rest = await portal.client.get(
            "/billing/invoices", headers={"Authorization": f"Bearer {forged}"}
        )
        assert rest.status_code == 401, name
        assert rest.json()["error"]["code"] == "UNAUTHENTICATED", name
        assert rest.headers["www-authenticate"].startswith("Bearer"), name
    assert await portal.signed_in(login["access_token"])


@pytest.mark.parametrize("name", [name for name in FORGERIES if name != "another, unknown session"])
def test_token_service_refuses_the_forgery_itself(signing_key: bytes, name: str):
    """Without HTTP or sessions: the verifier alone refuses it (all but the unknown session,
    which is well-formed and refused by the session check)."""
    service = TokenService(
        signing_key,
        issuer="kabinet",
        audience="kabinet-api",
        access_ttl=timedelta(minutes=5),
        clock=SYSTEM_CLOCK,
    )
    good, _ = service.issue_access_token(
        user_id=7,
        role=Role.CUSTOMER,
        customer_id=3,
        session_id=uuid.uuid4(),
        not_after=datetime.now(UTC) + timedelta(hours=1),
    )
    assert service.verify_access_token(good).customer_id == 3
    forged = FORGERIES[name](unpack(good), service._signing_key)
    with pytest.raises(Unauthenticated):
        service.verify_access_token(forged)


async def test_rotation_old_key_verifies_until_removed(portals: Portals, tmp_path: Path):
    old_key = generate_signing_key()
    new_key = generate_signing_key()
    retired = tmp_path / "retired.pem"
    retired.write_bytes(OKPKey.import_key(old_key).as_pem(private=False))
    before = await portals.open(signing_key=old_key)
    login = await before.login(await before.user())
    old_kid = unpack(login["access_token"])["header"]["kid"]

    during = await portals.open(signing_key=new_key, jwt_previous_public_key_files=[retired])
    after = await portals.open(signing_key=new_key)

    assert await during.signed_in(login["access_token"])
    jwks = (await during.client.get("/.well-known/jwks.json")).json()
    kids = [key["kid"] for key in jwks["keys"]]
    new_kid = service_key(during).kid
    assert kids == [new_kid, old_kid]
    fresh = await during.login(await during.user())
    assert unpack(fresh["access_token"])["header"]["kid"] == new_kid  # old key: verify only
    assert not await after.signed_in(login["access_token"])
    assert await after.signed_in(fresh["access_token"])
    after_kids = (await after.client.get("/.well-known/jwks.json")).json()["keys"]
    assert [key["kid"] for key in after_kids] == [new_kid]
    assert all("d" not in key for key in after_kids)


@embedded_only
async def test_access_tokens_never_outlive_their_session(portals: Portals):
    portal = await portals.open(
        session_absolute_timeout=timedelta(minutes=5), access_token_ttl=timedelta(hours=1)
    )
    login = await portal.login(await portal.user())
    claims = unpack(login["access_token"])["claims"]
    assert claims["exp"] - claims["iat"] <= 300
    assert {"iss", "aud", "sub", "iat", "nbf", "exp", "jti", "sid", "role"} <= claims.keys()
