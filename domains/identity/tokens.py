"""Access tokens: Ed25519-signed JWTs (RFC 8725, RFC 9068), verified against a key set for
rotation. Each names its session (`sid`), which the gateway checks is still alive."""

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OKPKey

from domains.clock import Clock
from domains.errors import Unauthenticated
from domains.identity.models import Role

ALGORITHM = "Ed25519"  # RFC 9864 fully-specified EdDSA; the only algorithm accepted
ACCESS_TYP = "at+jwt"  # RFC 9068; keeps other JWTs from passing as access tokens
# Header parameters that would let a token choose its own verification key.
_FORBIDDEN_HEADERS = frozenset({"jku", "x5u", "jwk", "x5c", "crit"})
_LEEWAY_SECONDS = 30


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: int
    role: Role
    customer_id: int | None
    session_id: uuid.UUID
    expires_at: datetime


def generate_signing_key() -> bytes:
    """A new Ed25519 private key as PKCS#8 PEM."""
    return OKPKey.generate_key("Ed25519").as_pem(private=True)


def _load_key(pem: bytes | str) -> OKPKey:
    key = OKPKey.import_key(pem)
    if key.curve_name != "Ed25519":
        raise ValueError("signing keys must be Ed25519")
    # RFC 7638 thumbprint: a stable kid derived from the key itself.
    return OKPKey.import_key(key.as_dict(private=key.is_private), {"kid": key.thumbprint()})


class TokenService:
    """Signs with the current key; verifies with it or any still-trusted older public key."""

    def __init__(
        self,
        signing_key_pem: bytes | str,
        *,
        issuer: str,
        audience: str,
        access_ttl: timedelta,
        clock: Clock,
        previous_public_keys: Sequence[bytes | str] = (),
    ) -> None:
        self._clock = clock
        self._signing_key = _load_key(signing_key_pem)
        if not self._signing_key.is_private:
            raise ValueError("the signing key must be a private key")
        verifying = [self._signing_key, *(_load_key(pem) for pem in previous_public_keys)]
        self._keys = KeySet(verifying)
        self._kids = {key.kid for key in verifying}
        self.issuer = issuer
        self.audience = audience
        self.access_ttl = access_ttl
        self._claims_rules = jwt.JWTClaimsRegistry(
            now=self._now,
            leeway=_LEEWAY_SECONDS,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nbf={"essential": True},
            jti={"essential": True},
            sid={"essential": True},
        )

    def issue_access_token(
        self,
        *,
        user_id: int,
        role: Role,
        customer_id: int | None,
        session_id: uuid.UUID,
        not_after: datetime,
    ) -> tuple[str, datetime]:
        """A token for one session; it never outlives `not_after` (the session's expiry)."""
        now = self._now()
        expires = min(now + int(self.access_ttl.total_seconds()), int(not_after.timestamp()))
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(user_id),
            "iat": now,
            "nbf": now,
            "exp": expires,
            "jti": secrets.token_urlsafe(16),
            "sid": str(session_id),
            "role": role.value,
        }
        if customer_id is not None:
            claims["cid"] = customer_id
        header = {"alg": ALGORITHM, "typ": ACCESS_TYP, "kid": self._signing_key.kid}
        token = jwt.encode(header, claims, self._signing_key, algorithms=[ALGORITHM])
        return token, datetime.fromtimestamp(expires, UTC)

    def _now(self) -> int:
        """The clock's time in whole seconds, as JWT claims count it."""
        return int(self._clock.now().timestamp())

    def verify_access_token(self, token: str) -> AccessClaims:
        try:
            decoded = jwt.decode(token, self._keys, algorithms=[ALGORITHM])
        except (JoseError, ValueError) as error:
            raise Unauthenticated("invalid access token") from error
        header = decoded.header
        if (
            header.get("typ") != ACCESS_TYP
            or header.get("kid") not in self._kids
            or _FORBIDDEN_HEADERS & header.keys()
        ):
            raise Unauthenticated("invalid access token")
        try:
            self._claims_rules.validate(decoded.claims)
            claims = decoded.claims
            customer_id = claims.get("cid")
            return AccessClaims(
                user_id=int(claims["sub"]),
                role=Role(claims["role"]),
                customer_id=int(customer_id) if customer_id is not None else None,
                session_id=uuid.UUID(str(claims["sid"])),
                expires_at=datetime.fromtimestamp(claims["exp"], UTC),
            )
        except (JoseError, KeyError, ValueError, TypeError) as error:
            raise Unauthenticated("invalid or expired access token") from error

    def jwks(self) -> dict[str, Any]:
        """Public keys for /.well-known/jwks.json."""
        return {
            "keys": [
                {**key.as_dict(private=False), "alg": ALGORITHM, "use": "sig"}
                for key in self._keys.keys
            ]
        }
