"""Password hashing with argon2id at OWASP's recommended cost."""

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1 is the floor; we go above it.
_HASHER = PasswordHasher(time_cost=3, memory_cost=19 * 1024, parallelism=1)

# Verified against when the email is unknown, so both failures cost the same time.
_DUMMY_HASH = _HASHER.hash("kabinet-timing-equaliser")


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant-cost check: an unknown account still runs one full argon2 verification."""
    try:
        return _HASHER.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _HASHER.check_needs_rehash(password_hash)
