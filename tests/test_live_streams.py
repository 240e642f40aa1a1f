"""Streams by subject: the hub hands an event to the watchers of its subject and to the
audiences of its type; a stream over one object, or an audience's, resumes after an event
with the events the relay publishes; a domain's declaration in `resolvers.live` decides who
may watch what.

A ticket (`ticket:<id>`, support's events) is the object that is not a customer account;
the bus is the real in-process one, the outbox a real database, the relay the real relay.
"""

import asyncio
import uuid
from asyncio import FIRST_COMPLETED
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import pytest_asyncio
import strawberry
from graphql import build_schema
from sqlalchemy import select
from strawberry import Info

from dataloaders import Loaders
from domains.billing.models import Invoice
from domains.customers.models import Customer
from domains.database import Database
from domains.errors import Forbidden, NotFound
from domains.events.bus import EventBus
from domains.events.cloudevent import CloudEvent
from domains.events.memory_bus import MemoryBus
from domains.events.relay import OutboxRelay
from domains.events.subject import SubjectKind
from domains.identity.models import Role, User
from domains.identity.viewer import Viewer
from domains.outbox import record_event
from gateway.services import Services
from resolvers.billing import invoice_by_pk
from resolvers.context import Context
from resolvers.live import DELIVERY, Delivery, Shared, Watched, audience, live
from resolvers.relay import pk_of, to_global_id
from subscriptions.hub import Hub, SlowConsumer, TooManySubscriptions
from subscriptions.stream import follow
from tests.conftest import catalog_of, make_settings

TICKET = SubjectKind("ticket")
CREATED, REPLIED = "ticket.created", "ticket.replied"
SOURCE = "urn:kabinet"
TOPICS = {"billing": "t.billing", "identity": "t.identity", "support": "t.support"}


@pytest_asyncio.fixture
async def bus() -> MemoryBus:
    return MemoryBus(partitions=3)


def _hub(bus: EventBus, **options: Any) -> Hub:
    settings: dict[str, Any] = {"queue_size": 10, "max_per_owner": 10, **options}
    return Hub(bus, sorted(TOPICS.values()), **settings)


@pytest_asyncio.fixture
async def hub(bus: MemoryBus) -> AsyncIterator[Hub]:
    running = _hub(bus)
    await running.start()
    yield running
    await running.stop()


async def _publish(bus: EventBus, type: str, ticket: int) -> CloudEvent:
    """Puts a support event on the bus, as the relay would."""
    event = CloudEvent(
        uuid.uuid4(), type, f"{SOURCE}:support", TICKET.of(ticket), datetime.now(UTC), {}
    )
    await bus.publish(TOPICS["support"], event.subject, event.to_json())
    return event


class _Inbox:
    """One subscriber of the hub, pulling its bodies as a transport would; a feed renders an
    event as its CloudEvent JSON, so what arrives is the event itself."""

    def __init__(
        self,
        hub: Hub,
        types: set[str],
        *,
        subject: str | None,
        owner: int,
        key: object = None,
        reading: bool = True,
    ) -> None:
        self.subscriber = hub.join(
            key if key is not None else object(),
            frozenset(types),
            subject=subject,
            owner=owner,
            render=lambda: _as_json,
        )
        self.subscriber.release()
        # One body at a time: a client that stops reading holds its pump back.
        self.bodies: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1)
        self.pumping = asyncio.create_task(self.subscriber.pump(self.bodies.put))

    async def next(self) -> CloudEvent:
        taking = asyncio.ensure_future(self.bodies.get())
        await asyncio.wait((taking, self.pumping), timeout=10, return_when=FIRST_COMPLETED)
        if not taking.done():
            taking.cancel()
            self.pumping.result()  # raises what ended it (SlowConsumer)
            raise TimeoutError("nothing arrived")
        return CloudEvent.from_json(taking.result())

    async def close(self) -> None:
        self.pumping.cancel()
        await asyncio.wait((self.pumping,))


def _as_json(event: CloudEvent) -> bytes:
    return event.to_json()


async def _next(inbox: _Inbox) -> uuid.UUID:
    return (await inbox.next()).id


async def _until_dropped(inbox: _Inbox) -> list[uuid.UUID]:
    """What a subscriber still gets before its stream ends with SlowConsumer."""
    taken = []
    while True:
        try:
            taken.append(await _next(inbox))
        except SlowConsumer:
            return taken


async def test_a_ticket_stream_gets_that_tickets_events_of_its_types_only(bus, hub):
    seven = _Inbox(hub, {REPLIED}, subject=TICKET.of(7), owner=1)
    eight = _Inbox(hub, {REPLIED}, subject=TICKET.of(8), owner=2)
    eights = await _publish(bus, REPLIED, 8)
    assert await _next(eight) == eights.id
    await _publish(bus, CREATED, 7)  # not a type ticket 7's watcher wants
    sevens = await _publish(bus, REPLIED, 7)
    # One ticket's events keep their order: the first that reached 7's watcher is its reply.
    assert await _next(seven) == sevens.id


async def test_an_audience_gets_every_subjects_events_of_its_types(bus, hub):
    queue = _Inbox(hub, {CREATED}, subject=None, owner=3)
    watcher = _Inbox(hub, {CREATED, REPLIED}, subject=TICKET.of(7), owner=1)
    eights = await _publish(bus, CREATED, 8)
    assert await _next(queue) == eights.id
    reply = await _publish(bus, REPLIED, 7)
    created = await _publish(bus, CREATED, 7)
    assert await _next(queue) == created.id  # the reply, before it on 7's partition, was not
    # Ticket 8's event, handed out before these, never reached ticket 7's watcher.
    assert [await _next(watcher), await _next(watcher)] == [reply.id, created.id]


async def test_a_slow_audience_is_dropped_and_a_subjects_watcher_is_not(bus):
    dropped: list[None] = []
    hub = _hub(bus, queue_size=2, on_slow_consumer=lambda: dropped.append(None))
    await hub.start()
    try:
        queue = _Inbox(hub, {CREATED}, subject=None, owner=3)
        watcher = _Inbox(hub, {CREATED}, subject=TICKET.of(7), owner=1)
        # One in the audience's hands, one in its pump's, two buffered: the fifth overflows.
        for _ in range(5):
            event = await _publish(bus, CREATED, 7)
            assert await _next(watcher) == event.id  # read as they come: never full
        assert len(await _until_dropped(queue)) == 2  # what was handed over before the drop
        assert dropped == [None]
        assert hub.subscriber_count == 1
        hub.leave(queue.subscriber)  # the dropped stream ending: nothing left to release
        assert hub.subscriber_count == 1
    finally:
        await hub.stop()


async def test_a_feed_renders_once_for_its_subscribers_and_drops_only_the_slow_one(bus):
    renders: list[int] = []
    hub = _hub(bus, queue_size=2, on_render=renders.append)
    await hub.start()
    try:
        shape = ("the same operation", TICKET.of(7))
        slow = _Inbox(hub, {CREATED}, subject=TICKET.of(7), owner=1, key=shape)
        fast = _Inbox(hub, {CREATED}, subject=TICKET.of(7), owner=2, key=shape)
        other = _Inbox(hub, {CREATED}, subject=TICKET.of(7), owner=2, key="another shape")
        assert hub.feed_count == 2
        published = []
        for _ in range(6):
            published.append((await _publish(bus, CREATED, 7)).id)
            assert await _next(fast) == published[-1]  # never held up by its slow feed-mate
            assert await _next(other) == published[-1]
        # Each event rendered once per feed: both of the shape's subscribers, then one.
        assert renders[:2] == [2, 1]
        assert len(renders) == 12
        assert renders[-2:] == [1, 1]  # the slow one was dropped on the way
        assert len(await _until_dropped(slow)) < len(published)
        assert hub.subscriber_count == 2
    finally:
        await hub.stop()


async def test_the_per_user_limit_counts_object_and_audience_streams_alike(bus):
    hub = _hub(bus, max_per_owner=2)
    thread = _Inbox(hub, {REPLIED}, subject=TICKET.of(7), owner=3)
    _Inbox(hub, {CREATED}, subject=None, owner=3)
    with pytest.raises(TooManySubscriptions):
        _Inbox(hub, {CREATED}, subject=None, owner=3)
    _Inbox(hub, {CREATED}, subject=None, owner=4)  # another user's own count
    hub.leave(thread.subscriber)
    _Inbox(hub, {CREATED}, subject=None, owner=3)
    assert hub.subscriber_count == 3


# Resuming: what was missed comes from the outbox, as the relay publishes it, then live.


async def _record(db: Database, type: str, ticket: int) -> uuid.UUID:
    async with db.transaction() as tx:
        return await record_event(tx, type, TICKET.of(ticket), {"version": 1})


async def _relayed(bus: EventBus, db: Database) -> dict[uuid.UUID, CloudEvent]:
    """Runs the relay over every unpublished row; the events it put on the bus, by id."""
    reader = bus.consumer([TOPICS["support"]], group=None)
    await reader.start()
    try:
        relay = OutboxRelay(db, bus, catalog=catalog_of(TOPICS, SOURCE))
        published = await relay.run_once()
        await relay.close()
        found: dict[uuid.UUID, CloudEvent] = {}
        while len(found) < published:
            for delivery in await reader.fetch(1.0):
                event = delivery.event()
                found[event.id] = event
        return found
    finally:
        await reader.stop()


class _Following:
    """A stream (`follow`) running as a transport's operation would, its bodies collected."""

    def __init__(
        self, hub: Hub, db: Database, subject: str | None, types: set[str], after: object
    ) -> None:
        self.bodies: asyncio.Queue[bytes] = asyncio.Queue()
        self.task = asyncio.create_task(
            follow(
                hub,
                db,
                key=object(),
                subject=subject,
                types=frozenset(types),
                owner=1,
                after=str(after),
                catch_up_limit=10,
                catalog=catalog_of(TOPICS, SOURCE),
                render=lambda: _as_json,
                send=self.bodies.put,
            )
        )

    async def take(self, count: int) -> list[CloudEvent]:
        taken = []
        for _ in range(count):
            taking = asyncio.ensure_future(self.bodies.get())
            await asyncio.wait((taking, self.task), timeout=10, return_when=FIRST_COMPLETED)
            if not taking.done():
                taking.cancel()
                self.task.result()  # raises what ended the stream
                raise TimeoutError("nothing arrived")
            taken.append(CloudEvent.from_json(taking.result()))
        return taken

    async def aclose(self) -> None:
        self.task.cancel()
        await asyncio.wait((self.task,))


async def test_a_ticket_stream_resumes_after_an_event_then_goes_on_live(bus, hub, db):
    first = await _record(db, REPLIED, 7)
    await _relayed(bus, db)  # the last event the client had, before it lost its socket
    await _record(db, REPLIED, 8)
    await _record(db, CREATED, 7)  # of ticket 7, not of the stream's types
    second = await _record(db, REPLIED, 7)  # committed, not yet relayed
    stream = _Following(hub, db, TICKET.of(7), {REPLIED}, after=first)
    try:
        [missed] = await stream.take(1)
        relayed = await _relayed(bus, db)
        # The same event as the relay's, source included, whichever way it came.
        assert missed == relayed[second]
        assert missed.source == f"{SOURCE}:support"
        third = await _record(db, REPLIED, 7)
        await _relayed(bus, db)
        # The relay's copy of the missed event was skipped: the next is the new one.
        assert [event.id for event in await stream.take(1)] == [third]
    finally:
        await stream.aclose()
    assert hub.subscriber_count == 0


async def test_an_audience_resumes_after_an_event_of_its_types(bus, hub, db):
    first = await _record(db, CREATED, 7)
    await _relayed(bus, db)
    reply = await _record(db, REPLIED, 7)
    eights = await _record(db, CREATED, 8)
    nines = await _record(db, CREATED, 9)
    stream = _Following(hub, db, None, {CREATED}, after=first)
    try:
        missed = await stream.take(2)
        assert [event.id for event in missed] == [eights, nines]
        relayed = await _relayed(bus, db)
        assert missed == [relayed[eights], relayed[nines]]
        tens = await _record(db, CREATED, 10)
        await _relayed(bus, db)
        assert [event.id for event in await stream.take(1)] == [tens]
    finally:
        await stream.aclose()
    # `after` must be one of the stream's events: of its types for an audience, of its
    # subject for one object's stream.
    for subject, after in [(None, reply), (None, uuid.uuid4()), (TICKET.of(7), eights)]:
        refused = _Following(hub, db, subject, {CREATED}, after=after)
        with pytest.raises(NotFound):
            await refused.take(1)
    assert hub.subscriber_count == 0


# Declarations: who may watch is the domain's rule, checked as any read of the object is.

INVOICE = SubjectKind("invoice")


@strawberry.type
class Happened:
    event_id: strawberry.ID
    subject: str


def _happened(event: CloudEvent) -> Happened:
    return Happened(event_id=strawberry.ID(str(event.id)), subject=event.subject)


async def watched_invoice(info: Info[Context], invoice_id: strawberry.ID) -> str:
    """One invoice's events: loaded as any read of it is, so another customer's is missing."""
    invoice = await invoice_by_pk(info, pk_of(invoice_id, "Invoice"))
    return INVOICE.of(invoice.id)


@strawberry.type
class Announced(Shared):
    """What every staff member sees alike: the event's own fields only."""

    event_id: strawberry.ID
    subject: str


def _announced(event: CloudEvent) -> Announced:
    return Announced(event_id=strawberry.ID(str(event.id)), subject=event.subject)


async def watched_ticket(info: Info[Context], ticket: int) -> Watched:
    """One ticket's replies among those of its subject (here the ticket's own)."""
    return Watched(TICKET.of(ticket), lambda event, _context: event.data.get("reply") == ticket)


_operators = audience(Role.OPERATOR, Role.ADMIN)


async def watched_mine(info: Info[Context]) -> Watched:
    """The new tickets given to the viewer: decided per event, by the feed's viewer, after a
    load (here a yield to the loop)."""
    await _operators(info)

    async def sends(event: CloudEvent, context: Context) -> bool:
        await asyncio.sleep(0)
        return event.data.get("operator_id") == context.signed_in.user_id

    return Watched(None, sends)


@strawberry.type
class Subscription:
    invoice_events: Happened = strawberry.subscription(
        resolver=live({"invoice.paid"}, _happened, watched_invoice)
    )
    ticket_replies: Happened = strawberry.subscription(
        resolver=live({REPLIED}, _happened, watched_ticket)
    )
    my_tickets: Happened = strawberry.subscription(
        resolver=live({CREATED}, _happened, watched_mine)
    )
    new_tickets: Happened = strawberry.subscription(
        resolver=live({CREATED}, _happened, audience(Role.OPERATOR))
    )
    announced_tickets: Announced = strawberry.subscription(
        resolver=live({CREATED}, _announced, audience(Role.OPERATOR, Role.ADMIN))
    )


@strawberry.type
class Query:
    ready: bool = True


SCHEMA = strawberry.Schema(query=Query, subscription=Subscription)
INVOICE_EVENTS = "subscription($id: ID!) { invoiceEvents(invoiceId: $id) { eventId subject } }"
NEW_TICKETS = "subscription { newTickets { eventId subject } }"
ANNOUNCED = "subscription { announcedTickets { eventId subject } }"
TICKET_REPLIES = "subscription($t: Int!) { ticketReplies(ticket: $t) { eventId subject } }"
MY_TICKETS = "subscription { myTickets { eventId } }"


@pytest_asyncio.fixture
async def services(sqlite_demo_copy: str, signing_key: bytes) -> AsyncIterator[Services]:
    running = Services.from_settings(make_settings(sqlite_demo_copy, signing_key))
    yield running
    await running.aclose()


async def _viewer(db: Database, email: str) -> Viewer:
    async with db.connect() as conn:
        user = (await conn.execute(select(User.id, User.role).where(User.email == email))).one()
        customer = await conn.scalar(select(Customer.id).where(Customer.user_id == user.id))
    return Viewer(user.id, user.role, customer)


async def _invoice_of(db: Database, customer_id: int) -> int:
    async with db.connect() as conn:
        return (
            await conn.scalars(select(Invoice.id).where(Invoice.customer_id == customer_id))
        ).first()


class _Watching:
    """One subscription of the test schema, as a viewer of the demo data opens it and a
    transport runs it: in a task of its own, its delivery collecting the bodies."""

    def __init__(self, services: Services, hub: Hub, viewer: Viewer) -> None:
        self.context = Context(
            db=services.db,
            auth=services.auth,
            loaders=Loaders(services.db),
            viewer=viewer,
            events=catalog_of(TOPICS, SOURCE),
            hub=hub,
        )
        self.bodies: asyncio.Queue[bytes] = asyncio.Queue()
        self.running: asyncio.Task[Any] | None = None

    def open(self, query: str, **variables: Any) -> None:
        async def run() -> Any:
            DELIVERY.set(Delivery(query, variables, None, send=self.bodies.put))
            results = await SCHEMA.subscribe(query, variables, context_value=self.context)
            assert not hasattr(results, "errors"), results
            try:
                return await anext(results)  # only a refusal, or the error the stream ends with
            finally:
                await results.aclose()

        self.running = asyncio.create_task(run())

    async def refusal(self, query: str, **variables: Any) -> Exception:
        self.open(query, **variables)
        assert self.running is not None
        result = await asyncio.wait_for(self.running, 10)
        assert result.errors, result
        return result.errors[0].original_error

    async def next(self) -> Any:
        return orjson.loads(await asyncio.wait_for(self.bodies.get(), 10))

    async def close(self) -> None:
        assert self.running is not None
        self.running.cancel()
        await asyncio.wait((self.running,))


async def _subscribed(hub: Hub, count: int = 1) -> None:
    """A subscription registers with the hub once its first result is awaited."""
    deadline = asyncio.get_running_loop().time() + 10
    while hub.subscriber_count < count:
        assert asyncio.get_running_loop().time() < deadline, "never subscribed"
        await asyncio.sleep(0.01)


def test_a_fields_arguments_are_after_and_its_rules_own():
    fields = build_schema(str(SCHEMA)).subscription_type.fields
    arguments = {name: str(arg.type) for name, arg in fields["invoiceEvents"].args.items()}
    assert arguments == {"after": "ID", "invoiceId": "ID!"}
    assert list(fields["newTickets"].args) == ["after"]
    assert list(fields["announcedTickets"].args) == ["after"]


async def test_a_customer_watches_their_own_object_only(services, bus, hub):
    alice = await _viewer(services.db, "alice@example.com")
    bobs = to_global_id("Invoice", await _invoice_of(services.db, 2))
    refused = await _Watching(services, hub, alice).refusal(INVOICE_EVENTS, id=bobs)
    assert isinstance(refused, NotFound)
    assert hub.subscriber_count == 0

    own = await _invoice_of(services.db, alice.customer_id)
    watching = _Watching(services, hub, alice)
    watching.open(INVOICE_EVENTS, id=to_global_id("Invoice", own))
    await _subscribed(hub)
    event = CloudEvent(uuid.uuid4(), "invoice.paid", SOURCE, INVOICE.of(own), datetime.now(UTC))
    await bus.publish(TOPICS["billing"], event.subject, event.to_json())
    assert await watching.next() == {
        "data": {"invoiceEvents": {"eventId": str(event.id), "subject": f"invoice:{own}"}}
    }
    await watching.close()
    assert hub.subscriber_count == 0


@pytest.mark.parametrize("email", ["alice@example.com", "admin@example.com"])
async def test_an_audience_refuses_viewers_outside_its_roles(services, hub, email):
    viewer = await _viewer(services.db, email)
    refused = await _Watching(services, hub, viewer).refusal(NEW_TICKETS)
    assert isinstance(refused, Forbidden)
    assert hub.subscriber_count == 0


async def test_an_operator_watches_the_new_tickets_audience(services, bus, hub):
    operator = await _viewer(services.db, "operator@example.com")
    watching = _Watching(services, hub, operator)
    watching.open(NEW_TICKETS)
    await _subscribed(hub)
    event = await _publish(bus, CREATED, 12)
    assert await watching.next() == {
        "data": {"newTickets": {"eventId": str(event.id), "subject": "ticket:12"}}
    }
    await watching.close()


# Feeds: subscribers of one shape share one execution and one encoded body per event.


@pytest_asyncio.fixture
async def counted(bus: MemoryBus) -> AsyncIterator[tuple[Hub, list[int]]]:
    """A hub that notes each render's number of subscribers."""
    renders: list[int] = []
    running = _hub(bus, on_render=renders.append)
    await running.start()
    yield running, renders
    await running.stop()


async def test_two_subscribers_of_one_shape_get_one_render(services, bus, counted):
    hub, renders = counted
    operator = await _viewer(services.db, "operator@example.com")
    first, second = _Watching(services, hub, operator), _Watching(services, hub, operator)
    first.open(NEW_TICKETS)
    second.open(NEW_TICKETS)
    await _subscribed(hub, 2)
    assert hub.feed_count == 1
    event = await _publish(bus, CREATED, 12)
    expected = {"data": {"newTickets": {"eventId": str(event.id), "subject": "ticket:12"}}}
    assert [await first.next(), await second.next()] == [expected, expected]
    assert renders == [2]
    await first.close()
    assert hub.feed_count == 1  # the other still watches
    await second.close()
    assert (hub.feed_count, hub.subscriber_count) == (0, 0)


async def test_viewers_share_a_feed_only_for_a_shared_payload(services, bus, counted):
    hub, renders = counted
    operator = await _viewer(services.db, "operator@example.com")
    admin = await _viewer(services.db, "admin@example.com")
    watching = [_Watching(services, hub, viewer) for viewer in (operator, admin)]
    for one in watching:
        one.open(ANNOUNCED)
    await _subscribed(hub, 2)
    assert hub.feed_count == 1  # the payload shows the event only: the same for both
    event = await _publish(bus, CREATED, 12)
    expected = {"data": {"announcedTickets": {"eventId": str(event.id), "subject": "ticket:12"}}}
    assert [await one.next() for one in watching] == [expected, expected]
    assert renders == [2]
    for one in watching:
        await one.close()


async def test_each_viewer_has_their_own_feed_and_their_own_rights(services, bus, counted):
    """The same operation and variables from two customers: two feeds, and each customer's
    rule still decides alone (Bob may not watch Alice's invoice)."""
    hub, renders = counted
    alice = await _viewer(services.db, "alice@example.com")
    bob = await _viewer(services.db, "bob@example.com")
    alices = to_global_id("Invoice", await _invoice_of(services.db, alice.customer_id))
    refused = await _Watching(services, hub, bob).refusal(INVOICE_EVENTS, id=alices)
    assert isinstance(refused, NotFound)
    operator = await _viewer(services.db, "operator@example.com")
    watching = [_Watching(services, hub, viewer) for viewer in (alice, operator)]
    for one in watching:
        one.open(INVOICE_EVENTS, id=alices)
    await _subscribed(hub, 2)
    assert hub.feed_count == 2  # the payload's fields are read with each viewer's rights
    invoice = int(pk_of(alices, "Invoice"))
    event = CloudEvent(uuid.uuid4(), "invoice.paid", SOURCE, INVOICE.of(invoice), datetime.now(UTC))
    await bus.publish(TOPICS["billing"], event.subject, event.to_json())
    expected = {
        "data": {"invoiceEvents": {"eventId": str(event.id), "subject": f"invoice:{invoice}"}}
    }
    assert [await one.next() for one in watching] == [expected, expected]
    assert renders == [1, 1]
    for one in watching:
        await one.close()


async def test_resuming_subscribers_share_the_feed_of_those_that_do_not(services, bus, counted):
    """`after` only says where a subscriber's catch-up starts: it shapes nothing sent live."""
    hub, renders = counted
    operator = await _viewer(services.db, "operator@example.com")
    before = await _record(services.db, CREATED, 11)
    missed = await _record(services.db, CREATED, 12)
    resuming = "subscription($a: ID) { newTickets(after: $a) { eventId } }"
    watching = [_Watching(services, hub, operator) for _ in range(3)]
    watching[0].open(resuming, a=str(before))
    watching[1].open(resuming, a=None)
    watching[2].open(resuming, a=str(missed))
    await _subscribed(hub, 3)
    assert hub.feed_count == 1
    assert await watching[0].next() == {"data": {"newTickets": {"eventId": str(missed)}}}
    event = await _publish(bus, CREATED, 13)
    live = {"data": {"newTickets": {"eventId": str(event.id)}}}
    assert [await one.next() for one in watching] == [live, live, live]
    assert renders == [3]
    for one in watching:
        await one.close()


# Narrower than a subject: a `Watched` stream sends only the events its rule lets through.


async def _publish_with(bus: EventBus, type: str, ticket: int, **data: Any) -> CloudEvent:
    event = CloudEvent(
        uuid.uuid4(), type, f"{SOURCE}:support", TICKET.of(ticket), datetime.now(UTC), data
    )
    await bus.publish(TOPICS["support"], event.subject, event.to_json())
    return event


async def test_a_watched_stream_sends_what_its_arguments_let_through(services, bus, counted):
    hub, renders = counted
    alice = await _viewer(services.db, "alice@example.com")
    watching = _Watching(services, hub, alice)
    watching.open(TICKET_REPLIES, t=7)
    await _subscribed(hub)
    await _publish_with(bus, REPLIED, 7, reply=8)  # ticket 7's subject, not the one watched
    sent = await _publish_with(bus, REPLIED, 7, reply=7)
    assert await watching.next() == {
        "data": {"ticketReplies": {"eventId": str(sent.id), "subject": "ticket:7"}}
    }
    assert renders == [1]  # the other was never executed
    await watching.close()


async def test_a_watched_stream_may_decide_by_the_viewer_after_a_load(services, bus, counted):
    hub, renders = counted
    operator = await _viewer(services.db, "operator@example.com")
    admin = await _viewer(services.db, "admin@example.com")
    watching = {viewer.user_id: _Watching(services, hub, viewer) for viewer in (operator, admin)}
    for one in watching.values():
        one.open(MY_TICKETS)
    await _subscribed(hub, 2)
    assert hub.feed_count == 2  # the rule reads the viewer: a feed each
    events = [
        await _publish_with(bus, CREATED, number, operator_id=user_id)
        for number, user_id in enumerate([admin.user_id, operator.user_id, admin.user_id])
    ]
    assert await watching[operator.user_id].next() == {
        "data": {"myTickets": {"eventId": str(events[1].id)}}
    }
    assert [await watching[admin.user_id].next() for _ in range(2)] == [
        {"data": {"myTickets": {"eventId": str(events[0].id)}}},
        {"data": {"myTickets": {"eventId": str(events[2].id)}}},
    ]
    assert sorted(renders) == [1, 1, 1]
    for one in watching.values():
        await one.close()
