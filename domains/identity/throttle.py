"""Brute-force protection: every sign-in attempt is counted per account and per address.

Counted in the domain action, not at the HTTP edge, so each attempt counts however it
arrives: one request, aliased `login` fields in one operation, or a batch of operations.
The account key is derived from the normalised email whether or not an account has it,
so the limiter answers the same for unknown and known emails.
"""

import hashlib
import ipaddress
from dataclasses import dataclass

from domains.errors import RateLimited
from domains.identity.user import normalize_email
from domains.limits import LimiterUnavailable, Rate, RateLimiter

# Retry hint when the limiter's store is down and its policy is "closed".
_UNAVAILABLE_RETRY_AFTER = 30.0


def account_key(action: str, email: str) -> str:
    # Hashed: limiter keys (in Redis) should not hold email addresses.
    digest = hashlib.sha256(normalize_email(email).encode()).hexdigest()
    return f"{action}:account:{digest}"


def address_key(action: str, ip_address: str) -> str:
    """IPv6 clients usually own a whole /64, so it counts as one address."""
    try:
        address = ipaddress.ip_address(ip_address)
    except ValueError:
        return f"{action}:ip:{ip_address}"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is None:
            return f"{action}:ip:{ipaddress.ip_network((address, 64), strict=False)}"
        address = address.ipv4_mapped
    return f"{action}:ip:{address}"


@dataclass(frozen=True, slots=True)
class Throttle:
    limiter: RateLimiter
    per_account: Rate
    per_address: Rate

    async def attempt(self, action: str, email: str, ip_address: str | None) -> None:
        """Counts one attempt at `action`; raises RateLimited when over either budget.

        The address goes first: attempts it refuses do not use up the account's budget,
        so one address spraying many accounts cannot lock their owners out.
        """
        budgets = [(account_key(action, email), self.per_account)]
        if ip_address:
            budgets.insert(0, (address_key(action, ip_address), self.per_address))
        for key, rate in budgets:
            try:
                decision = await self.limiter.acquire(key, rate)
            except LimiterUnavailable:
                raise RateLimited(
                    "sign-in is paused for a moment; try again shortly",
                    retry_after=_UNAVAILABLE_RETRY_AFTER,
                ) from None
            if not decision.allowed:
                raise RateLimited(
                    "too many attempts; try again later", retry_after=decision.retry_after
                )
