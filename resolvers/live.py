"""Live updates: a domain declares a subscription by its event types and payload, no more.

`live(types, payload)` makes the resolver of a `Subscription` field: it picks whose events
the viewer watches (a customer their own; staff the customer named by `customerId`), opens
the stream (missed events after `after`, then live ones) and maps each event with
`payload`, skipping events it maps to None. Each event's fields load with fresh loaders:
a subscription lives for hours, and a loader caches for as long as it lives.
"""

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import strawberry
from strawberry import Info

from dataloaders import Loaders
from domains.errors import Forbidden, InvalidInput
from domains.events.cloudevent import CloudEvent
from resolvers.context import Context
from resolvers.customers import customer_by_pk
from resolvers.relay import pk_of
from subscriptions.hub import SlowConsumer
from subscriptions.stream import events

AFTER = strawberry.argument(
    description="The `eventId` of the last event received: the events missed since are sent first."
)
CUSTOMER_ID = strawberry.argument(description="Staff only: the customer to watch.")


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """What every subscription payload starts with: where to resume, and when it happened."""

    event_id: strawberry.ID
    occurred_at: datetime


def event_fields(event: CloudEvent) -> dict[str, Any]:
    return {"event_id": strawberry.ID(str(event.id)), "occurred_at": event.time}


async def watched_customer(info: Info[Context], customer_id: strawberry.ID | None) -> int:
    """The customer whose events the viewer may watch: their own, or (staff) the one named."""
    viewer = info.context.signed_in
    if not viewer.is_staff:
        if customer_id is not None:
            raise Forbidden("customerId is for staff; customers watch their own account")
        if viewer.customer_id is None:
            raise Forbidden("this account has no customer account to watch")
        return viewer.customer_id
    if customer_id is None:
        raise InvalidInput("staff watch one customer at a time: pass customerId")
    customer = await customer_by_pk(info, pk_of(customer_id, "Customer"))
    return customer.id


def live(
    types: set[str], payload: Callable[[CloudEvent], object | None]
) -> Callable[..., AsyncGenerator[object, None]]:
    """The resolver of a subscription to `types` of events, each mapped by `payload`."""
    wanted = frozenset(types)

    async def subscribe(
        info: Info[Context],
        after: Annotated[strawberry.ID | None, AFTER] = None,
        customer_id: Annotated[strawberry.ID | None, CUSTOMER_ID] = None,
    ) -> AsyncGenerator[object, None]:
        context = info.context
        if context.hub is None:
            raise InvalidInput("live updates are not served on this endpoint")
        customer = await watched_customer(info, customer_id)
        stream = events(
            context.hub,
            context.db,
            customer_id=customer,
            owner=context.signed_in.user_id,
            types=wanted,
            after=after,
            catch_up_limit=context.catch_up_limit,
        )
        try:
            async for event in stream:
                mapped = payload(event)
                if mapped is not None:
                    context.loaders = Loaders(context.db)
                    yield mapped
        except SlowConsumer:
            # A websocket that fell behind is closed rather than sent more; over SSE the
            # error ends the stream.
            if context.disconnect is not None:
                context.disconnect(SlowConsumer.code)
            raise
        finally:
            await stream.aclose()

    return subscribe
