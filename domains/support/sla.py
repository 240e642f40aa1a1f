"""Service-level targets: when a ticket's first answer and its resolution are due."""

from datetime import datetime, timedelta
from typing import Protocol


class SlaTargets(Protocol):
    """A priority's targets, in minutes of SLA clock (a `ticket_sla_policies` row)."""

    first_response_minutes: int
    resolution_minutes: int


def due_times(policy: SlaTargets, now: datetime) -> tuple[datetime, datetime]:
    """(first response due, resolution due) of a ticket whose clock starts `now`."""
    return (
        now + timedelta(minutes=policy.first_response_minutes),
        now + timedelta(minutes=policy.resolution_minutes),
    )
