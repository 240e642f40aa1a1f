"""Live updates: a domain declares a subscription by what it watches, its event types and
its payload, no more.

`live(types, payload, watch)` makes the resolver of a `Subscription` field. `watch` is the
domain's rule for what the viewer may follow, given the field's own arguments: it returns
the subject of one object, checked as any read of that object is (`watched_customer`: a
customer their own account, staff the one named; a ticket's rule would load the ticket
through its owned-object check), or None for every subject, which only `audience(roles)`
answers, to staff of those roles. The resolver then opens the stream (missed events after
`after`, then live ones) and maps each event with `payload`, skipping events it maps to
None. Each event's fields load with fresh loaders: a subscription lives for hours, and a
loader caches for as long as it lives.
"""

import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import strawberry
from strawberry import Info

from dataloaders import Loaders
from domains.errors import Forbidden, InvalidInput
from domains.events.cloudevent import CloudEvent
from domains.events.subject import CUSTOMER
from domains.identity.models import Role
from resolvers.context import Context
from resolvers.customers import customer_by_pk
from resolvers.relay import pk_of
from subscriptions.hub import SlowConsumer
from subscriptions.stream import events

AFTER = strawberry.argument(
    description="The `eventId` of the last event received: the events missed since are sent first."
)
CUSTOMER_ID = strawberry.argument(description="Staff only: the customer to watch.")

# A domain's rule for what the viewer watches: `info` and the field's own arguments in, one
# subject out (None: every subject, an audience's).
Watch = Callable[..., Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """What every subscription payload starts with: where to resume, and when it happened."""

    event_id: strawberry.ID
    occurred_at: datetime


def event_fields(event: CloudEvent) -> dict[str, Any]:
    return {"event_id": strawberry.ID(str(event.id)), "occurred_at": event.time}


async def watched_customer(
    info: Info[Context], customer_id: Annotated[strawberry.ID | None, CUSTOMER_ID] = None
) -> str:
    """The customer account the viewer may watch: their own, or (staff) the one named."""
    viewer = info.context.signed_in
    if not viewer.is_staff:
        if customer_id is not None:
            raise Forbidden("customerId is for staff; customers watch their own account")
        if viewer.customer_id is None:
            raise Forbidden("this account has no customer account to watch")
        return CUSTOMER.of(viewer.customer_id)
    if customer_id is None:
        raise InvalidInput("staff watch one customer at a time: pass customerId")
    customer = await customer_by_pk(info, pk_of(customer_id, "Customer"))
    return CUSTOMER.of(customer.id)


def audience(*roles: Role) -> Watch:
    """The rule of a staff audience (operators watching every new ticket): every subject's
    events, for viewers of `roles` only."""
    allowed = frozenset(roles)
    if not allowed or Role.CUSTOMER in allowed:
        raise ValueError("an audience is some staff roles: a customer watches their own objects")

    async def watch(info: Info[Context]) -> None:
        if info.context.signed_in.role not in allowed:
            raise Forbidden(f"this stream is for {', '.join(sorted(allowed))} accounts")

    return watch


def live(
    types: set[str], payload: Callable[[CloudEvent], object | None], watch: Watch
) -> Callable[..., AsyncGenerator[object, None]]:
    """The resolver of a subscription to `types` of events of what `watch` allows, each
    mapped by `payload`; its arguments are `after` and those of `watch`."""
    wanted = frozenset(types)

    async def subscribe(
        info: Info[Context], after: strawberry.ID | None = None, **arguments: Any
    ) -> AsyncGenerator[object, None]:
        context = info.context
        if context.hub is None:
            raise InvalidInput("live updates are not served on this endpoint")
        subject = await watch(info, **arguments)
        stream = events(
            context.hub,
            context.db,
            subject=subject,
            types=wanted,
            owner=context.signed_in.user_id,
            after=after,
            catch_up_limit=context.catch_up_limit,
            catalog=context.events,
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

    # Strawberry reads a field's arguments from its resolver's signature: here `after`, then
    # the rule's own (`customerId`), so each domain's rule names the arguments it needs.
    info_parameter, *rule_arguments = inspect.signature(watch, eval_str=True).parameters.values()
    subscribe.__signature__ = inspect.signature(subscribe).replace(  # type: ignore[attr-defined]
        parameters=[
            info_parameter,
            inspect.Parameter(
                "after",
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[strawberry.ID | None, AFTER],
            ),
            *(argument.replace(kind=inspect.Parameter.KEYWORD_ONLY) for argument in rule_arguments),
        ]
    )
    return subscribe
