"""The one error hierarchy: each failure carries a stable machine code for clients."""

import math
from typing import Any


class DomainError(Exception):
    """A rule refused the request; `code` is what API clients branch on."""

    code = "BAD_USER_INPUT"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    @property
    def extensions(self) -> dict[str, Any]:
        """Machine-readable details beside `code` (GraphQL `extensions`), camelCase keys."""
        return {}


class NotFound(DomainError):
    """Missing, or not the viewer's: both look the same so ids cannot be probed."""

    code = "NOT_FOUND"

    def __init__(self, resource: str) -> None:
        super().__init__(f"{resource} not found")
        self.resource = resource


class Unauthenticated(DomainError):
    code = "UNAUTHENTICATED"


class Forbidden(DomainError):
    code = "FORBIDDEN"


class InvalidInput(DomainError):
    code = "BAD_USER_INPUT"


class RateLimited(DomainError):
    """Too many attempts; `retry_after` says when the next one will be let in."""

    code = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        # Whole seconds, as HTTP's Retry-After wants; never 0, or clients would spin.
        self.retry_after = max(1, math.ceil(retry_after))

    @property
    def extensions(self) -> dict[str, Any]:
        return {"retryAfter": self.retry_after}
