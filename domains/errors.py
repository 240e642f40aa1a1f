"""The one error hierarchy: each failure carries a stable machine code for clients."""


class DomainError(Exception):
    """A rule refused the request; `code` is what API clients branch on."""

    code = "BAD_USER_INPUT"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


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
