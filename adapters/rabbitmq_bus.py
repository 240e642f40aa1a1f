"""The event bus on RabbitMQ (aio-pika), with the semantics the Kafka bus documents.

Each topic is a durable topic exchange (`kabinet.billing`), and an event's routing key is
its CloudEvent type (`payment.created`). Messages are persistent and every publish waits
for the broker's confirm, so the relay marks a row only once RabbitMQ has it.

Partitions. A message carries its key (the subject) and its partition, a CRC-32 of the key
modulo `partitions` (the same stable hash as the in-process bus), in headers. A consumer
group `g` has a headers exchange `g.partitions`, bound to each topic it reads, and one
durable quorum queue per partition (`g.0`, `g.1`, ...), each bound to its partition number
and declared with single-active-consumer. (The consistent-hash exchange plugin would place
the messages as well, but it is not enabled on every server, and the partition number is
what the consumers need anyway.) So each service keeps every event, and one key's events
wait in one queue, in order.

Members share a group's partitions by leases: a member reads partition `p` while it holds
the exclusive queue `g.p.lease` (RabbitMQ lets one connection declare it; it goes when that
connection does, so a crashed member's partitions are freed at once). Every member counts
the group's members (consumers of `g.members`) about once a second, at a fetch, gives back
what it holds beyond its fair share (ceil(partitions / members)) and takes free partitions
up to it. Single-active-consumer on the queues keeps one reader per partition even while
a lease changes hands. A commit acknowledges what it covers; what a member gave back,
stopped or crashed with unacknowledged goes back to the queue ahead of what came later
(RabbitMQ returns a closed channel's messages so), for the next reader, in order. Every
process of a deployment must use the same `partitions`.

Unlike a Kafka topic, an exchange keeps nothing: a group receives what is published after
its queues exist. They are declared by its first member's start, by `ensure_group`, and by
`ensure_topics` for the `groups` the deployment names (the relay calls it before its first
publish), so the standard consumers miss nothing even when the worker starts last.

A reader without a group (an API instance's hub) has an exclusive, auto-deleted queue bound
to every exchange it reads, from which the broker forgets each message once sent.

Dead letters: a topic ending in `dead_letter_suffix` is a dead-letter exchange whose
durable quorum queue of the same name keeps what the consumers publish there (the original
message with the consumer framework's headers). Lag is queue depth: the ready messages of
the partitions a member holds, plus those it has received and not yet handed out.

Connections are made on demand: when the broker is away `publish` raises and the next call
connects again; a consumer that lost its connection connects again on its next fetch.
"""

import asyncio
import logging
import math
import time
import uuid
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import aio_pika
import orjson
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
)
from aiormq.exceptions import AMQPError, ChannelInvalidStateError
from pamqp.commands import Basic

from domains.events.bus import Delivery

log = logging.getLogger(__name__)

# Bus headers, kept apart from the message's own (a dead letter's `kabinet.error.*`).
KEY_HEADER = "kabinet.key"
PARTITION_HEADER = "kabinet.partition"
_BUS_HEADERS = (KEY_HEADER, PARTITION_HEADER)
QUORUM = {"x-queue-type": "quorum"}
# How many unacknowledged messages the broker sends a member per partition.
PREFETCH = 500
# What a lost connection raises, on its way or on a channel it closed.
BROKER_AWAY = (AMQPError, ConnectionError, ChannelInvalidStateError, TimeoutError)
# How often a member looks at its group's size and the free partitions.
REBALANCE_SECONDS = 1.0


def partition_of(key: str, partitions: int) -> int:
    """CRC-32 of the key: stable across processes, as the in-process bus places keys."""
    return zlib.crc32(key.encode()) % partitions


def _event_type(value: bytes) -> str:
    """The routing key: the CloudEvent's type, or "" for a message that is not one."""
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError:
        return ""
    kind = document.get("type") if isinstance(document, dict) else None
    return kind if isinstance(kind, str) else ""


def _header_bytes(value: object) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return str(value).encode()


class RabbitMQBus:
    def __init__(
        self,
        url: str,
        *,
        partitions: int,
        dead_letter_suffix: str,
        groups: Mapping[str, Sequence[str]] | None = None,
        request_timeout: float = 10.0,
        client_name: str = "kabinet",
    ) -> None:
        """`groups`: the deployment's consumer groups and the topics each reads, whose
        queues `ensure_topics` declares."""
        self.url = url
        self.partitions = partitions
        self.dead_letter_suffix = dead_letter_suffix
        self.groups = {group: tuple(topics) for group, topics in (groups or {}).items()}
        self.request_timeout = request_timeout
        self.client_name = client_name
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._connecting = asyncio.Lock()

    async def start(self) -> None:
        """Connects now when the broker is there; later, on demand, if not."""
        try:
            await self._connected()
        except Exception as error:  # any connection failure: retried on publish
            log.warning("RabbitMQ at %s unreachable at start (%s); will retry", self.url, error)

    async def stop(self) -> None:
        await self._drop()

    async def ensure_topics(self, topics: Iterable[str]) -> None:
        """Declares the exchanges, and the queues of the groups the deployment names."""
        wanted = set(topics).union(*self.groups.values())
        channel = await self._connected()
        for topic in sorted(wanted):
            await self._exchange(topic)
        for group, group_topics in self.groups.items():
            await declare_group(channel, group, group_topics, self.partitions)

    async def ensure_group(self, group: str, topics: Sequence[str]) -> None:
        """Declares the group's queues: from now on the broker keeps the topics' messages
        for it, whether or not a member is running."""
        channel = await self._connected()
        for topic in topics:
            await self._exchange(topic)
        await declare_group(channel, group, topics, self.partitions)

    async def publish(
        self,
        topic: str,
        key: str,
        value: bytes,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        [error] = await self._send([(topic, key, value)], headers)
        if error is not None:
            raise error

    async def publish_many(
        self, messages: Sequence[tuple[str, str, bytes]]
    ) -> list[Exception | None]:
        """Sends every message at once on the confirming channel and waits for all the
        confirms together: one round trip for the batch, not one per message."""
        return await self._send(messages, ())

    async def _send(
        self, messages: Sequence[tuple[str, str, bytes]], headers: Sequence[tuple[str, bytes]]
    ) -> list[Exception | None]:
        try:
            await self._connected()
            exchanges = [await self._exchange(topic) for topic, _, _ in messages]
        except Exception as error:
            await self._drop()
            return [error] * len(messages)
        sends = [
            asyncio.ensure_future(
                exchange.publish(
                    self._message(key, value, headers),
                    routing_key=_event_type(value),
                    # No queue bound yet (no group reads the topic) is no failure: there is
                    # nobody to deliver to, as a Kafka topic nobody reads.
                    mandatory=False,
                    timeout=self.request_timeout,
                )
            )
            for exchange, (_, key, value) in zip(exchanges, messages, strict=True)
        ]
        outcomes: list[Exception | None] = []
        for send in sends:
            try:
                confirm = await send
            except Exception as error:
                outcomes.append(error)
                continue
            if isinstance(confirm, Basic.Ack):
                outcomes.append(None)
            else:  # a nack: the broker could not take it
                outcomes.append(RuntimeError(f"RabbitMQ refused the message: {confirm!r}"))
        if any(isinstance(outcome, Exception) for outcome in outcomes):
            await self._drop()  # unsure what the channel holds: the next call connects again
        return outcomes

    def consumer(self, topics: Sequence[str], *, group: str | None) -> "RabbitMQConsumer":
        return RabbitMQConsumer(self, tuple(topics), group)

    def _message(
        self, key: str, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> aio_pika.Message:
        table: dict[str, object] = {name: bytearray(raw) for name, raw in headers}
        table[KEY_HEADER] = bytearray(key.encode())
        table[PARTITION_HEADER] = str(partition_of(key, self.partitions))
        return aio_pika.Message(
            value,
            headers=table,  # type: ignore[arg-type]
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            content_type="application/cloudevents+json",
        )

    async def _exchange(self, topic: str) -> AbstractExchange:
        exchange = self._exchanges.get(topic)
        if exchange is None:
            channel = await self._connected()
            exchange = await declare_topic(channel, topic, self.dead_letter_suffix)
            self._exchanges[topic] = exchange
        return exchange

    async def _connected(self) -> AbstractChannel:
        async with self._connecting:
            if self._channel is None or self._channel.is_closed:
                await self._drop_unlocked()
                connection = await aio_pika.connect(
                    self.url, timeout=self.request_timeout, client_properties=self._client()
                )
                try:
                    self._channel = await connection.channel(publisher_confirms=True)
                except BaseException:
                    await connection.close()
                    raise
                self._connection = connection  # type: ignore[assignment]
            return self._channel

    def _client(self) -> dict[str, str]:
        return {"connection_name": f"{self.client_name} publisher"}

    async def _drop(self) -> None:
        async with self._connecting:
            await self._drop_unlocked()

    async def _drop_unlocked(self) -> None:
        self._exchanges.clear()
        self._channel = None
        if self._connection is not None:
            connection, self._connection = self._connection, None
            try:
                await connection.close()
            except Exception as error:  # already gone
                log.debug("closing the RabbitMQ connection failed: %s", error)


async def declare_topic(
    channel: AbstractChannel, topic: str, dead_letter_suffix: str
) -> AbstractExchange:
    """The topic's exchange; a dead-letter topic's also gets the queue that keeps them."""
    exchange = await channel.declare_exchange(topic, aio_pika.ExchangeType.TOPIC, durable=True)
    if topic.endswith(dead_letter_suffix):
        queue = await channel.declare_queue(topic, durable=True, arguments=QUORUM)
        await queue.bind(exchange, "#")
    return exchange


def partition_queue(group: str, partition: int) -> str:
    return f"{group}.{partition}"


async def declare_group(
    channel: AbstractChannel, group: str, topics: Sequence[str], partitions: int
) -> None:
    """The group's headers exchange, bound to its topics, and its partition queues."""
    by_partition = await channel.declare_exchange(
        f"{group}.partitions", aio_pika.ExchangeType.HEADERS, durable=True
    )
    for topic in topics:
        await by_partition.bind(topic, "#")
    for partition in range(partitions):
        queue = await channel.declare_queue(
            partition_queue(group, partition),
            durable=True,
            arguments={**QUORUM, "x-single-active-consumer": True},
        )
        await queue.bind(
            by_partition, arguments={"x-match": "all", PARTITION_HEADER: str(partition)}
        )


@dataclass(slots=True)
class _Lease:
    """A partition this member reads: its channel (consuming) and the lease queue."""

    channel: AbstractChannel
    name: str  # of the lease queue
    # Delivery offsets not yet acknowledged, in delivery order, and their messages.
    unacked: dict[int, AbstractIncomingMessage] = field(default_factory=dict)


@dataclass(slots=True)
class _Received:
    partition: int
    message: AbstractIncomingMessage


class RabbitMQConsumer:
    def __init__(self, bus: RabbitMQBus, topics: tuple[str, ...], group: str | None) -> None:
        self.bus = bus
        self.topics = topics
        self.group = group
        self._id = uuid.uuid4().hex[:12]
        self._connection: AbstractConnection | None = None
        self._control: AbstractChannel | None = None
        self._held: dict[int, _Lease] = {}
        self._inbox: deque[_Received] = deque()
        self._arrived = asyncio.Event()
        # Next offset handed out, per consumer: offsets only grow, so a late commit never
        # acknowledges a message received after a partition was given back and taken again.
        self._next_offset = 0
        self._ready: dict[int, int] = {}  # ready messages per held partition, as last seen
        self._rebalanced_at = 0.0
        self._hub_queue: AbstractQueue | None = None
        self._started = False

    async def start(self) -> None:
        await self._connect()
        self._started = True

    async def stop(self) -> None:
        """Closes the connection: unacknowledged messages go back to their queues, the
        leases go with it."""
        self._started = False
        await self._disconnect()

    async def fetch(self, wait: float, max_records: int = 500) -> list[Delivery]:
        if not self._started:
            raise RuntimeError("the consumer is not started")
        if self._connection is None or self._connection.is_closed or self._control_closed():
            try:
                await self._disconnect()
                await self._connect()
            except Exception as error:  # the broker is away: try again on the next fetch
                log.warning("consumer %s cannot reach RabbitMQ: %s", self.group, error)
                await asyncio.sleep(wait)
                return []
        try:
            return await self._take_deliveries(wait, max_records)
        except BROKER_AWAY as error:
            # The connection went: what was not acknowledged goes back to the queues, and
            # the next fetch connects again.
            log.warning("consumer %s lost RabbitMQ: %s", self.group, error)
            await self._disconnect()
            return []

    def _control_closed(self) -> bool:
        return self._control is None or self._control.is_closed

    async def _take_deliveries(self, wait: float, max_records: int) -> list[Delivery]:
        if self.group is not None and time.monotonic() - self._rebalanced_at > REBALANCE_SECONDS:
            await self._rebalance()
        if not self._inbox:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), wait)
            except TimeoutError:
                return []
        deliveries: list[Delivery] = []
        while self._inbox and len(deliveries) < max_records:
            deliveries.append(self._delivery(self._inbox.popleft()))
        if deliveries and self.group is not None:
            await self._count_ready()
        return deliveries

    async def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Acknowledges the held messages below each `(topic, partition)`'s offset; those of
        a partition given back since went back to the queue, for its next reader."""
        if self.group is None:
            return
        try:
            await self._acknowledge(offsets)
        except BROKER_AWAY as error:
            # Unacknowledged, they come back (at least once); consumers dedupe by event id.
            log.info("commit dropped with the connection in group %s: %s", self.group, error)

    async def _acknowledge(self, offsets: Mapping[tuple[str, int], int]) -> None:
        for partition, lease in self._held.items():
            done = [
                offset
                for offset, message in lease.unacked.items()
                if offset < offsets.get((message.exchange or "", partition), -1)
            ]
            if not done:
                continue
            if len(done) == len(lease.unacked):  # all of it: one acknowledgement
                await lease.unacked[done[-1]].ack(multiple=True)
                lease.unacked.clear()
                continue
            for offset in done:
                await lease.unacked.pop(offset).ack()

    def lag(self) -> dict[tuple[str, int], int]:
        label = ",".join(self.topics)
        waiting: dict[int, int] = {}
        for received in self._inbox:
            waiting[received.partition] = waiting.get(received.partition, 0) + 1
        return {
            (label, partition): self._ready.get(partition, 0) + waiting.get(partition, 0)
            for partition in self._held
        }

    def _delivery(self, received: _Received) -> Delivery:
        message = received.message
        offset = self._next_offset
        self._next_offset += 1
        if self.group is not None and received.partition in self._held:
            self._held[received.partition].unacked[offset] = message
        headers = message.headers or {}
        key = headers.get(KEY_HEADER)
        return Delivery(
            message.exchange or "",
            received.partition,
            offset,
            _header_bytes(key) if key is not None else None,
            message.body,
            tuple(
                (name, _header_bytes(value))
                for name, value in headers.items()
                if name not in _BUS_HEADERS
            ),
        )

    async def _connect(self) -> None:
        connection = await aio_pika.connect(
            self.bus.url,
            timeout=self.bus.request_timeout,
            client_properties={"connection_name": f"{self.bus.client_name} {self.group}"},
        )
        try:
            control = await connection.channel(publisher_confirms=False)
            for topic in self.topics:
                await declare_topic(control, topic, self.bus.dead_letter_suffix)
            if self.group is None:
                await self._follow(control)
            else:
                await declare_group(control, self.group, self.topics, self.bus.partitions)
                members = await control.declare_queue(
                    f"{self.group}.members", durable=False, auto_delete=True
                )
                await members.consume(_ignore, consumer_tag=f"member-{self._id}")
        except BaseException:
            await connection.close()
            raise
        self._connection = connection  # type: ignore[assignment]
        self._control = control
        self._rebalanced_at = 0.0

    async def _follow(self, channel: AbstractChannel) -> None:
        """The hub's queue: this process's own, gone with its connection."""
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        for topic in self.topics:
            await queue.bind(topic, "#")
        await queue.consume(self._receiver(None), no_ack=True)
        self._hub_queue = queue

    async def _disconnect(self) -> None:
        self._held.clear()
        self._inbox.clear()
        self._ready.clear()
        self._hub_queue = None
        self._control = None
        if self._connection is not None:
            connection, self._connection = self._connection, None
            try:
                await connection.close()
            except Exception as error:  # already gone
                log.debug("closing the consumer's connection failed: %s", error)

    def _receiver(
        self, partition: int | None
    ) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        async def receive(message: AbstractIncomingMessage) -> None:
            self._inbox.append(
                _Received(_partition(message) if partition is None else partition, message)
            )
            self._arrived.set()

        return receive

    async def _rebalance(self) -> None:
        """Gives back partitions beyond the fair share, takes free ones up to it."""
        assert self.group is not None
        assert self._control is not None
        self._rebalanced_at = time.monotonic()
        members = await self._control.declare_queue(
            f"{self.group}.members", passive=True, durable=False, auto_delete=True
        )
        count = max(1, members.declaration_result.consumer_count or 1)
        share = math.ceil(self.bus.partitions / count)
        for partition in sorted(self._held, reverse=True)[: max(0, len(self._held) - share)]:
            await self._release(partition)
        for partition in range(self.bus.partitions):
            if len(self._held) >= share:
                break
            if partition in self._held:
                continue
            queue = await self._control.declare_queue(
                partition_queue(self.group, partition), passive=True
            )
            if queue.declaration_result.consumer_count == 0:
                await self._take(partition)
        await self._count_ready()

    async def _take(self, partition: int) -> None:
        assert self.group is not None
        assert self._connection is not None
        channel = await self._connection.channel(publisher_confirms=False)
        name = f"{partition_queue(self.group, partition)}.lease"
        try:
            await channel.declare_queue(
                name,
                exclusive=True,
                auto_delete=True,
                durable=False,
            )
        except AMQPError:  # another member holds it (the broker closed the channel)
            return
        await channel.set_qos(prefetch_count=PREFETCH)
        queue = await channel.get_queue(partition_queue(self.group, partition), ensure=False)
        self._held[partition] = _Lease(channel, name)
        await queue.consume(self._receiver(partition))

    async def _release(self, partition: int) -> None:
        """Closes the partition's channel (what it did not acknowledge goes back to the
        queue), drops what it received and has not handed out, then frees the lease."""
        assert self._control is not None
        lease = self._held.pop(partition)
        self._inbox = deque(r for r in self._inbox if r.partition != partition)
        self._ready.pop(partition, None)
        await lease.channel.close()
        # Only now, so the next owner starts after the returned messages are back in place.
        await self._control.queue_delete(lease.name)

    async def _count_ready(self) -> None:
        assert self.group is not None
        assert self._control is not None
        for partition in list(self._held):
            queue = await self._control.declare_queue(
                partition_queue(self.group, partition), passive=True
            )
            self._ready[partition] = queue.declaration_result.message_count or 0


def _partition(message: AbstractIncomingMessage) -> int:
    value = (message.headers or {}).get(PARTITION_HEADER)
    try:
        return int(_header_bytes(value)) if value is not None else 0
    except ValueError:
        return 0


async def _ignore(message: AbstractIncomingMessage) -> None:
    """The members queue carries no messages: its consumers are how a group counts."""
