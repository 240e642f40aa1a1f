"""What identity's actions need, built once per app from its settings."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from domains.clock import Clock
from domains.database import Database
from domains.identity.session import Sessions
from domains.identity.throttle import Throttle
from domains.identity.tokens import TokenService


@dataclass(frozen=True, slots=True)
class Auth:
    db: Database
    # What the identity actions read the time from (link and refresh-token expiry).
    clock: Clock
    tokens: TokenService
    sessions: Sessions
    throttle: Throttle
    refresh_idle_timeout: timedelta
    password_reset_ttl: timedelta
    # Makes password-reset links (domains/identity/password_reset.py); never stored.
    reset_link_key: bytes
    # How long an invitation's link (domains/identity/invitation.py) sets the first password.
    invitation_ttl: timedelta = timedelta(days=7)
    # Told each sign-in's outcome (True: signed in), whichever transport it came by.
    on_login: Callable[[bool], None] = lambda _signed_in: None
