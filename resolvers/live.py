"""Live updates: a domain declares a subscription by what it watches, its event types and
its payload, no more.

`live(types, payload, watch)` makes the resolver of a `Subscription` field. `watch` is the
domain's rule for what the viewer may follow, given the field's own arguments: it returns
the subject of one object, checked as any read of that object is (`watched_customer`: a
customer their own account, staff the one named), or None for every subject, which only
`audience(roles)` answers, to staff of those roles; or, when the stream is narrower than
its subject's events (one ticket among a customer's, the assignments to the viewer), a
`Watched`: the subject and which of its events the feed sends. The resolver then joins the
stream's feed (missed events after `after`, then live ones): each event is mapped with
`payload` (None: skipped), executed on the operation's selection and encoded once per
feed, and the same bytes go to every subscriber of the feed through its transport's
`Delivery`.

A feed is the subscribers of one operation, variables and subject; when the payload is
`Shared` (its fields show only what the event carries) viewers share it, otherwise each
viewer has their own, since its fields load with the viewer's rights. Each event's fields
load with fresh loaders: a subscription lives for hours, and a loader caches for as long
as it lives.
"""

import inspect
import types as builtin_types
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

import orjson
import strawberry
from graphql import (
    DocumentNode,
    ExecutionResult,
    Executor,
    VariableNode,
    Visitor,
    execute_subscription_event,
    visit,
)
from strawberry import Info

from dataloaders import Loaders
from domains.errors import Forbidden, InvalidInput
from domains.events.cloudevent import CloudEvent
from domains.events.subject import CUSTOMER
from domains.identity.models import Role
from resolvers.context import Context
from resolvers.customers import customer_by_pk
from resolvers.errors import coded
from resolvers.relay import pk_of
from subscriptions.hub import Render, Rendered, SlowConsumer, Subscriber, Writer
from subscriptions.stream import follow

AFTER = strawberry.argument(
    description="The `eventId` of the last event received: the events missed since are sent first."
)
CUSTOMER_ID = strawberry.argument(description="Staff only: the customer to watch.")

# Which of a subject's events a feed sends, asked with the context the event renders in
# (fresh loaders, the feed's viewer): it may load what it decides by.
Sends = Callable[[CloudEvent, Context], bool | Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class Watched:
    """A stream narrower than its subject's events. `sends` is decided by the field's
    arguments, and may read the viewer only for a payload that is not Shared (whose feed is
    that viewer's alone): the feed's key holds nothing else it could depend on."""

    subject: str | None
    sends: Sends


# A domain's rule for what the viewer watches: `info` and the field's own arguments in, one
# subject out (None: every subject, an audience's), or a `Watched`.
Watch = Callable[..., Awaitable[str | Watched | None]]


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """What every subscription payload starts with: where to resume, and when it happened."""

    event_id: strawberry.ID
    occurred_at: datetime


class Shared:
    """A payload whose fields show only what its event carries (no field loads through the
    viewer's rights): every viewer allowed to watch the subject sees the same, so one feed
    serves them all. Payloads with fields such as an invoice, loaded as the viewer may read
    it, are not Shared, and their feeds are per viewer."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Delivery:
    """How a transport carries one subscription: what the client sent (which, with the
    subject and the viewer's scope, names the feed), and how a `next` body reaches it."""

    query: str
    variables: Mapping[str, Any] | None
    operation_name: str | None
    # Waits until the client's transport takes the body.
    send: Callable[[bytes], Awaitable[None]]
    # Takes a body at once when the transport is ready; None: everything goes by `send`.
    writer: Writer | None = None
    # Given the subscriber once it is caught up, by a transport that then keeps it (and
    # lets it go) itself: the operation ends there, and nothing of it waits meanwhile.
    adopt: Callable[[Subscriber], None] | None = None


# Set by the transport in the task running the operation (`gateway.ws`, SSE).
DELIVERY: ContextVar[Delivery] = ContextVar("kabinet.live.delivery")


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
    shared = _is_shared(payload)

    async def subscribe(
        info: Info[Context], after: strawberry.ID | None = None, **arguments: Any
    ) -> AsyncGenerator[object, None]:
        context = info.context
        delivery = DELIVERY.get(None)
        if context.hub is None or delivery is None:
            raise InvalidInput("live updates are not served on this endpoint")
        viewer = context.signed_in
        watched = await watch(info, **arguments)
        subject, sends = (
            (watched.subject, watched.sends) if isinstance(watched, Watched) else (watched, None)
        )
        key = (
            id(info._raw_info.schema),
            delivery.query,
            delivery.operation_name,
            _shaping_variables(info, delivery.variables),
            subject,
            None if shared else (viewer.user_id, viewer.role, viewer.customer_id),
        )
        try:
            await follow(
                context.hub,
                context.db,
                key=key,
                subject=subject,
                types=wanted,
                owner=viewer.user_id,
                after=after,
                catch_up_limit=context.catch_up_limit,
                catalog=context.events,
                render=lambda: _renderer(info, delivery, payload, sends),
                send=delivery.send,
                writer=delivery.writer,
                adopt=delivery.adopt,
            )
        except SlowConsumer:
            # A websocket that fell behind is closed rather than sent more; over SSE the
            # error ends the stream.
            if context.disconnect is not None:
                context.disconnect(SlowConsumer.code)
            raise
        # graphql-core wants a stream; this one yields nothing itself: the feed's bodies go
        # out through the delivery. `follow` returns only when the transport adopted the
        # subscriber.
        return
        yield

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


def _is_shared(payload: Callable[[CloudEvent], object | None]) -> bool:
    """Whether every payload type `payload` returns (None aside) is Shared."""
    returned = get_type_hints(payload).get("return")
    if get_origin(returned) in (Union, builtin_types.UnionType):
        options = [option for option in get_args(returned) if option is not type(None)]
    else:
        options = [returned]
    return all(isinstance(option, type) and issubclass(option, Shared) for option in options)


def _shaping_variables(info: Info[Context], variables: Mapping[str, Any] | None) -> str:
    """The variables that shape what the feed sends, encoded: all but the one that only
    carries `after`, so subscribers resuming from different events (every client after a
    restart) still share a feed."""
    raw = info._raw_info
    resume = next(
        (
            argument.value.name.value
            for argument in raw.field_nodes[0].arguments or ()
            if argument.name.value == "after" and isinstance(argument.value, VariableNode)
        ),
        None,
    )
    if resume is not None and _uses_of(resume, raw) > 1:
        resume = None  # used elsewhere too: it shapes the selection
    shaping = {name: value for name, value in (variables or {}).items() if name != resume}
    # As text: orjson's bytes keep a 4 KiB block behind them, and every subscriber holds
    # its key for as long as it lives.
    return orjson.dumps(shaping, option=orjson.OPT_SORT_KEYS).decode()


class _Uses(Visitor):
    """Counts the reads of one variable."""

    def __init__(self, variable: str) -> None:
        super().__init__()
        self.variable = variable
        self.count = 0

    def enter_variable(self, node: VariableNode, *_args: Any) -> None:
        self.count += node.name.value == self.variable


def _uses_of(variable: str, raw: Any) -> int:
    """How often the operation (its fragments included) reads `variable`."""
    uses = _Uses(variable)
    for node in (raw.operation.selection_set, *raw.fragments.values()):
        visit(node, uses)
    return uses.count


def _renderer(
    info: Info[Context],
    delivery: Delivery,
    payload: Callable[[CloudEvent], object | None],
    sends: Sends | None,
) -> Render:
    """A feed's rendering of an event `sends` lets through: the operation executed on the
    event's payload with the context of the feed's first subscriber (the same viewer, or a
    Shared payload that reads none), encoded as the `next` message's payload."""
    raw = info._raw_info  # graphql-core's: its schema and the validated document's parts
    document = DocumentNode(definitions=(raw.operation, *raw.fragments.values()))
    executor = Executor.build(
        raw.schema,
        document,
        raw_variable_values=dict(delivery.variables or {}),
        operation_name=delivery.operation_name,
    )
    if isinstance(executor, list):  # cannot happen: the operation was validated to get here
        raise executor[0]
    # Nothing of the first subscriber's connection stays with the feed.
    base = replace(info.context, request=None, disconnect=None, connection_params=None)

    def execute(event: CloudEvent, context: Context) -> Rendered | Awaitable[Rendered]:
        root = payload(event)
        if root is None:
            return None
        run = executor.build_per_event_executor(root)
        run.context_value = context
        result = execute_subscription_event(run)
        if inspect.isawaitable(result):
            return _encoded_when_done(result)
        return _encoded(result)

    def render(event: CloudEvent) -> Rendered | Awaitable[Rendered]:
        context = replace(base, loaders=Loaders(base.db))
        if sends is None:
            return execute(event, context)
        verdict = sends(event, context)
        if inspect.isawaitable(verdict):
            return _executed_if(verdict, lambda: execute(event, context))
        return execute(event, context) if verdict else None

    return render


async def _executed_if(
    verdict: Awaitable[bool], execute: Callable[[], Rendered | Awaitable[Rendered]]
) -> Rendered:
    if not await verdict:
        return None
    rendered = execute()
    return await rendered if inspect.isawaitable(rendered) else rendered


async def _encoded_when_done(result: Awaitable[ExecutionResult]) -> bytes:
    return _encoded(await result)


def _encoded(result: ExecutionResult) -> bytes:
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        body["errors"] = [coded(error).formatted for error in result.errors]
    return orjson.dumps(body)
