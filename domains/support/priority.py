"""Ticket priorities in order, and raising one by steps (capped at urgent)."""

from domains.support.models import TicketPriority

# Lowest first: a priority's index is its rank.
PRIORITIES: tuple[TicketPriority, ...] = (
    TicketPriority.LOW,
    TicketPriority.NORMAL,
    TicketPriority.HIGH,
    TicketPriority.URGENT,
)
RANK = {priority: rank for rank, priority in enumerate(PRIORITIES)}


def raised(priority: TicketPriority, steps: int) -> TicketPriority:
    """`priority` raised by `steps`, at most to urgent."""
    return PRIORITIES[min(RANK[priority] + steps, len(PRIORITIES) - 1)]
