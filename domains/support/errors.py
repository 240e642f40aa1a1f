"""Support refusals, each with the stable code API clients branch on."""

from domains.errors import DomainError


class TicketClosed(DomainError):
    """Closed, or resolved longer ago than the reopen window: open a new ticket instead."""

    code = "TICKET_CLOSED"


class InvalidTransition(DomainError):
    """The ticket's status cannot go from where it is to where it was asked to."""

    code = "INVALID_TRANSITION"


class OperatorAtCapacity(DomainError):
    """The operator already holds as many open tickets as their capacity allows."""

    code = "OPERATOR_AT_CAPACITY"


class NotAnOperator(DomainError):
    """The user named is not a support operator (or lacks the ticket's skill)."""

    code = "NOT_AN_OPERATOR"
