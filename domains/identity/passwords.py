"""Password hashing with argon2id at OWASP's recommended cost, and the password policy."""

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from domains.errors import InvalidInput

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024  # argon2 would hash megabytes; refuse before spending the CPU

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


def check_password_policy(password: str, email: str) -> None:
    """NIST SP 800-63B: a length range and not the account's own name; no composition rules.

    Length counts characters (code points), so any script and spaces are welcome.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"the password must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(f"the password must be at most {MAX_PASSWORD_LENGTH} characters")
    candidate = password.strip().casefold()
    if candidate in {email.casefold(), email.partition("@")[0].casefold()}:
        raise InvalidInput("the password must not be your email address")
