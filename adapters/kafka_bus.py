"""The event bus on Kafka (aiokafka): what the API instances, the relay and consumers share.

The producer waits for every in-sync replica (`acks=all`) and, on Apache Kafka, is
idempotent, so its own retries never duplicate or reorder a key's messages. It connects
lazily: when the broker is away `publish` raises, and the next call connects again, so a
caller that retries (the relay) recovers by itself once the broker is back.

A broker that lost its log (a test broker restarted empty) has no topics and offsets
starting at 0 again: `ensure_topics` recreates the topics, and every consumer falls back
to the earliest offset when its position is out of range.
"""

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    TopicAlreadyExistsError,
    for_code,
)
from aiokafka.structs import TopicPartition

from domains.events.bus import Delivery

log = logging.getLogger(__name__)

# A partition's batch in the producer, in bytes: the relay hands it hundreds of events at
# once (about 600 bytes each), which then travel in a few requests, not one per 16 KiB
# (aiokafka's default); brokers take up to 1 MiB per message batch by default.
MAX_BATCH_BYTES = 256 * 1024
# How often a reader without a group looks for partitions added to its topics.
PARTITION_REFRESH_SECONDS = 5.0


class KafkaBus:
    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str,
        idempotent: bool,
        partitions: int,
        replication_factor: int = 1,
        request_timeout: float = 10.0,
        session_timeout: float = 10.0,
        linger: float = 0.005,
        fetch_max_wait: float = 0.05,
    ) -> None:
        self.bootstrap = bootstrap
        self.client_id = client_id
        self._idempotent = idempotent
        self._partitions = partitions
        self._replication_factor = replication_factor
        self._request_timeout_ms = int(request_timeout * 1000)
        self._linger_ms = int(linger * 1000)
        # How long a fetch may wait for data: brokers may hold it that long even when
        # data arrives sooner (Tansu does), so it bounds live-event latency.
        self._fetch_max_wait_ms = int(fetch_max_wait * 1000)
        # A new group's first assignment waits about half of it on Tansu, as a member
        # that vanished without leaving holds its partitions for all of it.
        self._session_timeout_ms = int(session_timeout * 1000)
        self._producer: AIOKafkaProducer | None = None
        self._connecting = asyncio.Lock()

    async def start(self) -> None:
        """Connects the producer now when the broker is there; later, on demand, if not."""
        try:
            await self._connected_producer()
        except Exception as error:  # any connection failure: retried on publish
            log.warning("Kafka at %s unreachable at start (%s); will retry", self.bootstrap, error)

    async def stop(self) -> None:
        """Flushes what the producer holds and disconnects."""
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def ensure_topics(self, topics: Iterable[str]) -> None:
        """Creates the topics missing on the broker with the configured partition count."""
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            request_timeout_ms=self._request_timeout_ms,
        )
        await admin.start()
        try:
            wanted = sorted(set(topics))
            existing = set(await admin.list_topics())
            missing = [topic for topic in wanted if topic not in existing]
            if not missing:
                return
            response = await admin.create_topics(
                [NewTopic(topic, self._partitions, self._replication_factor) for topic in missing]
            )
            for topic, code, *_ in response.topic_errors:
                error = for_code(code)
                if code and error is not TopicAlreadyExistsError:
                    raise error(f"cannot create topic {topic}")
        finally:
            await admin.close()

    async def ensure_group(self, group: str, topics: Sequence[str]) -> None:
        """Nothing to declare: a topic keeps its messages for any group."""

    async def publish(
        self,
        topic: str,
        key: str,
        value: bytes,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        producer = await self._connected_producer()
        await producer.send_and_wait(topic, value, key=key.encode(), headers=list(headers))

    async def publish_many(
        self, messages: Sequence[tuple[str, str, bytes]]
    ) -> list[Exception | None]:
        """Each message goes into the producer's batches as soon as it is given (`send`),
        so they travel together, a request per partition batch, and are acknowledged
        together."""
        producer = await self._connected_producer()
        sent: list[asyncio.Future[object] | Exception] = []
        for topic, key, value in messages:
            try:
                sent.append(await producer.send(topic, value, key=key.encode()))
            except Exception as error:  # this one is not sent; the others still may be
                sent.append(error)
        outcomes: list[Exception | None] = []
        for future in sent:
            if isinstance(future, Exception):
                outcomes.append(future)
                continue
            try:
                await future
                outcomes.append(None)
            except Exception as error:
                outcomes.append(error)
        return outcomes

    def consumer(self, topics: Sequence[str], *, group: str | None) -> "KafkaConsumer":
        return KafkaConsumer(self, tuple(topics), group)

    async def _connected_producer(self) -> AIOKafkaProducer:
        async with self._connecting:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap,
                    client_id=self.client_id,
                    acks="all",
                    enable_idempotence=self._idempotent,
                    linger_ms=self._linger_ms,
                    max_batch_size=MAX_BATCH_BYTES,
                    request_timeout_ms=self._request_timeout_ms,
                )
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer


class KafkaConsumer:
    def __init__(self, bus: KafkaBus, topics: tuple[str, ...], group: str | None) -> None:
        self.bus = bus
        self.topics = topics
        self.group = group
        self._consumer: AIOKafkaConsumer | None = None
        # Next offset to read of each partition read from, for lag().
        self._positions: dict[TopicPartition, int] = {}
        self._partitions_seen_at = 0.0

    async def start(self) -> None:
        await self.bus.ensure_topics(self.topics)
        options = {
            "bootstrap_servers": self.bus.bootstrap,
            "client_id": self.bus.client_id,
            "enable_auto_commit": False,
            # A new group, or a position the broker no longer has (it lost its log).
            "auto_offset_reset": "earliest",
            # A JoinGroup request may wait a whole rebalance: longer than the session.
            "request_timeout_ms": max(
                self.bus._request_timeout_ms, self.bus._session_timeout_ms + 5000
            ),
            "session_timeout_ms": self.bus._session_timeout_ms,
            "fetch_max_wait_ms": self.bus._fetch_max_wait_ms,
            "heartbeat_interval_ms": self.bus._session_timeout_ms // 4,
        }
        if self.group is None:
            consumer = AIOKafkaConsumer(group_id=None, **options)
        else:
            consumer = AIOKafkaConsumer(*self.topics, group_id=self.group, **options)
        await consumer.start()
        self._consumer = consumer
        if self.group is None:
            await self._follow_partitions(from_end=True)

    async def stop(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()

    async def fetch(self, wait: float, max_records: int = 500) -> list[Delivery]:
        consumer = self._running()
        if self.group is None and time.monotonic() - self._partitions_seen_at > (
            PARTITION_REFRESH_SECONDS
        ):
            await self._follow_partitions(from_end=False)
        batches = await consumer.getmany(timeout_ms=int(wait * 1000), max_records=max_records)
        deliveries = [
            Delivery(
                record.topic,
                record.partition,
                record.offset,
                record.key,
                record.value,
                tuple(record.headers),
            )
            for records in batches.values()
            for record in records
        ]
        for tp, records in batches.items():
            self._positions[tp] = records[-1].offset + 1
        return deliveries

    async def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        consumer = self._running()
        if self.group is None:
            return
        assigned = consumer.assignment()
        owned = {
            TopicPartition(topic, partition): offset
            for (topic, partition), offset in offsets.items()
            if TopicPartition(topic, partition) in assigned
        }
        if not owned:
            return
        try:
            await consumer.commit(owned)
        except (CommitFailedError, IllegalStateError) as error:
            # A rebalance took the partitions away: their new owner reads them again from
            # the last commit (at-least-once), as the protocol intends.
            log.info("commit dropped after a rebalance in group %s: %s", self.group, error)

    def lag(self) -> dict[tuple[str, int], int]:
        if self._consumer is None:
            return {}
        lag: dict[tuple[str, int], int] = {}
        for tp in self._consumer.assignment():
            highwater = self._consumer.highwater(tp)
            if highwater is not None and tp in self._positions:
                lag[(tp.topic, tp.partition)] = max(0, highwater - self._positions[tp])
        return lag

    def _running(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("the consumer is not started")
        return self._consumer

    async def _follow_partitions(self, *, from_end: bool) -> None:
        """Reads every partition of the topics without a group: those there at start from
        their end, any added later from their beginning (all they hold is new)."""
        consumer = self._running()
        await consumer.topics()  # refreshes the cluster metadata
        self._partitions_seen_at = time.monotonic()
        current = consumer.assignment()
        wanted = {
            TopicPartition(topic, partition)
            for topic in self.topics
            for partition in consumer.partitions_for_topic(topic) or ()
        }
        if wanted <= current:
            return
        kept = {tp: await consumer.position(tp) for tp in current & wanted}
        consumer.assign(sorted(wanted))
        for tp, position in kept.items():
            consumer.seek(tp, position)
        added = sorted(wanted - current)
        if from_end:
            await consumer.seek_to_end(*added)
        else:
            await consumer.seek_to_beginning(*added)
