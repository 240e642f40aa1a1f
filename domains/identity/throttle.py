"""Brute-force protection: sign-in attempts counted per address, per account and per pair.

Counted in the domain action, not at the HTTP edge, so each attempt counts however it
arrives: one request, aliased `login` fields in one operation, or a batch of operations.
The account key is derived from the normalised email whether or not an account has it,
so the limiter answers the same for unknown and known emails.

The rule (README "Limits"), built so that nobody can lock a known account out:
- one address has `per_address` attempts per window, whatever accounts it tries;
- one address has `per_pair` attempts per window on one account, and a successful
  attempt gives them back: a user who signs in is never slowed by their own sign-ins;
- one account has `per_account` attempts per window from all addresses together. Past
  it the account is under attack and nothing is refused for that alone: each address then
  gets one attempt per window on it (an attempt costs the whole pair budget). Guessing
  from many addresses slows down to one guess per address per window, while the owner,
  from an address that has not just failed, still signs in.

Sign-in never runs unmetered: a throttle whose store is unreachable refuses every attempt
("closed"), whatever KABINET_RATE_LIMIT_ON_STORE_FAILURE says for the other budgets.
The refusal comes before the password is checked, so a right and a wrong password get
the same answer while Redis (the limiter and the session store) is down.
"""

import hashlib
import ipaddress
from dataclasses import dataclass

from domains.errors import RateLimited
from domains.identity.user import normalize_email
from domains.limits import LimiterUnavailable, Rate, RateLimiter

# Retry hint when the limiter's store is down.
_UNAVAILABLE_RETRY_AFTER = 30.0


def account_key(action: str, email: str) -> str:
    return f"{action}:account:{_email_digest(email)}"


def pair_key(action: str, email: str, ip_address: str) -> str:
    return f"{action}:pair:{_email_digest(email)}:{_address(ip_address)}"


def address_key(action: str, ip_address: str) -> str:
    return f"{action}:ip:{_address(ip_address)}"


def _email_digest(email: str) -> str:
    # Hashed: limiter keys (in Redis) should not hold email addresses.
    return hashlib.sha256(normalize_email(email).encode()).hexdigest()


def _address(ip_address: str) -> str:
    """IPv6 clients usually own a whole /64, so it counts as one address."""
    try:
        address = ipaddress.ip_address(ip_address)
    except ValueError:
        return ip_address
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is None:
            return str(ipaddress.ip_network((address, 64), strict=False))
        address = address.ipv4_mapped
    return str(address)


@dataclass(frozen=True, slots=True)
class Throttle:
    # Must fail closed (LimiterUnavailable): see the module's docstring.
    limiter: RateLimiter
    per_pair: Rate
    per_account: Rate
    per_address: Rate

    async def attempt(self, action: str, email: str, ip_address: str | None) -> None:
        """Counts one attempt at `action`; raises RateLimited when a budget refuses it.

        The address goes first: attempts it refuses use up nothing of the account's, so one
        address spraying many accounts cannot slow their owners down. An attempt without
        an address (none is known) is counted on the account alone, as a pair of its own.
        """
        try:
            if ip_address:
                await self._spend(address_key(action, ip_address), self.per_address)
            under_attack = not (
                await self.limiter.acquire(account_key(action, email), self.per_account)
            ).allowed
            key = pair_key(action, email, ip_address or "")
            cost = self.per_pair.limit if under_attack else 1
            await self._spend(key, self.per_pair, cost)
        except LimiterUnavailable:
            raise _paused() from None

    async def succeeded(self, action: str, email: str, ip_address: str | None) -> None:
        """Gives the pair's attempts back: the right password is not a guess to count."""
        try:
            await self.limiter.forget(pair_key(action, email, ip_address or ""))
        except LimiterUnavailable:
            raise _paused() from None

    async def _spend(self, key: str, rate: Rate, cost: int = 1) -> None:
        decision = await self.limiter.acquire(key, rate, cost)
        if not decision.allowed:
            raise RateLimited(
                "too many attempts; try again later", retry_after=decision.retry_after
            )


def _paused() -> RateLimited:
    return RateLimited(
        "sign-in is paused for a moment; try again shortly", retry_after=_UNAVAILABLE_RETRY_AFTER
    )
