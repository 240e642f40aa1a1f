"""What a message needs that its event does not carry, read when the event is planned.

A `Lookup` is a declared read whose parameters are fields of the event's data and whose
one row's fields join that data (the event's own fields win on a clash), so the in-app
entry rendered at planning and the email or push rendered later by the dispatcher show the
same thing. Read-only, in the consumer's claim transaction; no row: nothing to tell.
"""

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select

from domains.customers.models import Contract, Subscription, Tariff
from domains.reads import Read, Reader
from domains.support.models import Ticket

tickets = Ticket.__table__
tariffs = Tariff.__table__
subscriptions = Subscription.__table__
contracts = Contract.__table__


@dataclass(frozen=True, slots=True)
class Lookup:
    read: Read[Any]
    keys: tuple[str, ...]  # the event's fields, passed as the read's parameters of that name

    async def fields(self, reader: Reader, data: dict[str, Any]) -> dict[str, Any] | None:
        """The row's fields, or None when the event's data or the row is missing."""
        if any(data.get(key) is None for key in self.keys):
            return None
        found = await reader.fetch(self.read, **{key: data[key] for key in self.keys})
        if not found:
            return None
        row = found[0]
        return {name: getattr(row, name) for name in row.__slots__}


@dataclass(frozen=True, slots=True)
class TicketSubjectRow:
    subject: str


# The ticket's subject, which only `ticket.created` carries: the customer's own words.
TICKET_SUBJECT = Lookup(
    Read(
        TicketSubjectRow,
        select(tickets.c.subject).where(tickets.c.id == bindparam("ticket_id")),
    ),
    ("ticket_id",),
)


@dataclass(frozen=True, slots=True)
class TariffNamesRow:
    from_tariff: str
    to_tariff: str


_from, _to = tariffs.alias("from_tariff"), tariffs.alias("to_tariff")
TARIFF_NAMES = Lookup(
    Read(
        TariffNamesRow,
        select(_from.c.name.label("from_tariff"), _to.c.name.label("to_tariff")).where(
            _from.c.id == bindparam("from_tariff_id"), _to.c.id == bindparam("to_tariff_id")
        ),
    ),
    ("from_tariff_id", "to_tariff_id"),
)


@dataclass(frozen=True, slots=True)
class ServiceRow:
    tariff: str
    address: str


# Which of the customer's services an event is about: its tariff and where it is.
SUBSCRIPTION_SERVICE = Lookup(
    Read(
        ServiceRow,
        select(tariffs.c.name.label("tariff"), contracts.c.address)
        .select_from(subscriptions)
        .join(tariffs, tariffs.c.id == subscriptions.c.tariff_id)
        .join(contracts, contracts.c.id == subscriptions.c.contract_id)
        .where(subscriptions.c.id == bindparam("subscription_id")),
    ),
    ("subscription_id",),
)
