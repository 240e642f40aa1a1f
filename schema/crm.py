"""The CRM subgraph: each customer's timeline, kept by the CRM consumer, read by staff."""

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from domains.crm.consumer import CONSUMER_NAME, HANDLERS
from domains.crm.models import TimelineKind
from domains.crm.timeline import TimelineEntryRow
from resolvers import crm as crm_resolvers
from schema.access import Access
from schema.plugin import Domain
from schema.shared import Connection, is_row

if TYPE_CHECKING:
    from schema.entities import User

TimelineEntryKind = strawberry.enum(TimelineKind, name="TimelineKind")


@strawberry.type(
    description="Something that happened to a customer: a payment, an invoice, a ticket."
)
class TimelineEntry:
    event_id: strawberry.ID = strawberry.field(description="The domain event it records.")
    occurred_at: datetime
    kind: TimelineEntryKind
    summary: str
    reference: str = strawberry.field(
        description='What it is about, "<kind>:<id>" ("payment:12", "invoice:7", "ticket:3").'
    )
    actor: Annotated["User", strawberry.lazy("schema.entities")] | None = strawberry.field(
        resolver=crm_resolvers.entry_actor,
        description="Who acted, when the event names them: staff, or the customer on their "
        "ticket; none for the system's doings and for payments.",
    )

    is_type_of = is_row(TimelineEntryRow)


@strawberry.type
class CustomerCrmFields:
    """The CRM subgraph's part of `Customer`."""

    timeline: Connection[TimelineEntry] = strawberry.field(
        resolver=crm_resolvers.customer_timeline,
        description="Staff: payments, invoices, tickets and staff actions, newest first.",
    )


domain = Domain(
    name="crm",
    entity_parts={"Customer": CustomerCrmFields},
    access={
        "Customer.timeline": Access.STAFF,
        "TimelineEntry": Access.STAFF,
        "TimelineEntryConnection": Access.STAFF,
        "TimelineEntryEdge": Access.STAFF,
    },
    consumers={CONSUMER_NAME: HANDLERS},
)
