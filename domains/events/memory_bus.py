"""The in-process event bus of the embedded mode, with Kafka's semantics in memory.

Topics have a fixed number of partitions and a message goes to the partition its key
hashes to (CRC-32, stable across processes), so one key's messages stay in order. A group
shares its topics' partitions among its members (reassigned whenever one joins or leaves)
and resumes from its committed offsets, the earliest kept offset for a new group; a reader
without a group starts at the end of each partition.

Memory is bounded: a partition drops the messages every group that reads its topic has
committed and every group-less reader has read (all of them until some group reads the
topic), and never keeps more than `max_retained` messages; a reader
left behind the trimmed start resumes at the earliest kept message, as a Kafka consumer
with `auto_offset_reset="earliest"` does after retention deleted its offset.
"""

import asyncio
import itertools
import zlib
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from domains.events.bus import Delivery

TopicPartition = tuple[str, int]


@dataclass(slots=True)
class _Record:
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


@dataclass(slots=True)
class _Partition:
    start: int = 0  # the offset of records[0]
    records: deque[_Record] = field(default_factory=deque)

    @property
    def end(self) -> int:
        return self.start + len(self.records)


@dataclass(slots=True)
class _Group:
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    members: list["MemoryConsumer"] = field(default_factory=list)


class MemoryBus:
    def __init__(self, *, partitions: int = 6, max_retained: int = 100_000) -> None:
        self._partitions = partitions
        self._max_retained = max_retained
        self._topics: dict[str, list[_Partition]] = {}
        self._groups: dict[str, _Group] = {}
        self._readers: set[MemoryConsumer] = set()  # started group-less readers
        # Publishers notify it; waiting readers wake up and look at their partitions.
        self._changed = asyncio.Condition()

    async def start(self) -> None:
        """Nothing to connect: the bus lives in this process."""

    async def stop(self) -> None:
        """Nothing to release; messages not yet read are lost with the process."""

    async def ensure_topics(self, topics: Iterable[str]) -> None:
        for topic in topics:
            self._topic(topic)

    async def ensure_group(self, group: str, topics: Sequence[str]) -> None:
        """Nothing to declare: a topic keeps its messages for any group."""

    async def publish(
        self,
        topic: str,
        key: str,
        value: bytes,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        raw_key = key.encode()
        log = self._topic(topic)
        partition = log[zlib.crc32(raw_key) % len(log)]
        partition.records.append(_Record(raw_key, value, tuple(headers)))
        self._trim(topic)
        await self._notify()

    async def publish_many(
        self, messages: Sequence[tuple[str, str, bytes]]
    ) -> list[Exception | None]:
        for topic, key, value in messages:
            await self.publish(topic, key, value)
        return [None] * len(messages)

    def consumer(self, topics: Sequence[str], *, group: str | None) -> "MemoryConsumer":
        return MemoryConsumer(self, tuple(topics), group)

    def _topic(self, topic: str) -> list[_Partition]:
        if topic not in self._topics:
            self._topics[topic] = [_Partition() for _ in range(self._partitions)]
        return self._topics[topic]

    def _partitions_of(self, topics: Sequence[str]) -> list[TopicPartition]:
        return [(topic, n) for topic in topics for n in range(len(self._topic(topic)))]

    def _start_of(self, tp: TopicPartition) -> int:
        return self._topics[tp[0]][tp[1]].start

    def _end_of(self, tp: TopicPartition) -> int:
        return self._topics[tp[0]][tp[1]].end

    async def _join(self, member: "MemoryConsumer") -> None:
        if member.group is None:
            member.assign({tp: self._end_of(tp) for tp in self._partitions_of(member.topics)})
            self._readers.add(member)
        else:
            group = self._groups.setdefault(member.group, _Group())
            group.members.append(member)
            self._rebalance(group)
        await self._notify()

    async def _leave(self, member: "MemoryConsumer") -> None:
        if member.group is None:
            self._readers.discard(member)
        else:
            group = self._groups[member.group]
            group.members.remove(member)
            self._rebalance(group)
        member.assign({})
        await self._notify()

    def _rebalance(self, group: _Group) -> None:
        """Deals each partition to the members subscribed to its topic, round robin; a
        member keeps its position in partitions it keeps, others start from the commit."""
        owners: dict[MemoryConsumer, list[TopicPartition]] = {m: [] for m in group.members}
        topics = sorted({topic for member in group.members for topic in member.topics})
        for topic in topics:
            members = [m for m in group.members if topic in m.topics]
            for tp, member in zip(self._partitions_of([topic]), itertools.cycle(members)):
                owners[member].append(tp)
        for member, tps in owners.items():
            member.assign(
                {
                    tp: member.positions.get(tp, group.committed.get(tp, self._start_of(tp)))
                    for tp in tps
                }
            )

    def _commit(self, member: "MemoryConsumer", offsets: Mapping[TopicPartition, int]) -> None:
        assert member.group is not None
        committed = self._groups[member.group].committed
        for tp, offset in offsets.items():
            # A partition taken away by a rebalance belongs to its new owner now: a late
            # commit from the old one is dropped, as Kafka refuses it.
            if tp in member.positions:
                committed[tp] = offset
        for topic in {tp[0] for tp in offsets}:
            self._trim(topic)

    def _trim(self, topic: str) -> None:
        for number, partition in enumerate(self._topics[topic]):
            tp = (topic, number)
            needed = [
                group.committed.get(tp, partition.start)
                for group in self._groups.values()
                if any(topic in m.topics for m in group.members) or tp in group.committed
            ]
            # Until a group reads the topic, what it publishes is kept for it (up to the cap).
            if needed:
                needed += [r.positions[tp] for r in self._readers if tp in r.positions]
            keep_from = max(min(needed, default=0), partition.end - self._max_retained)
            while partition.start < keep_from:
                partition.records.popleft()
                partition.start += 1

    async def _notify(self) -> None:
        """Wakes the waiting readers: a message came or partitions moved."""
        async with self._changed:
            self._changed.notify_all()


class MemoryConsumer:
    def __init__(self, bus: MemoryBus, topics: tuple[str, ...], group: str | None) -> None:
        self.bus = bus
        self.topics = topics
        self.group = group
        # Next offset to read of each assigned partition.
        self.positions: dict[TopicPartition, int] = {}
        self._started = False

    def assign(self, positions: dict[TopicPartition, int]) -> None:
        self.positions = positions

    async def start(self) -> None:
        if not self._started:
            self._started = True
            await self.bus._join(self)

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self.bus._leave(self)

    async def fetch(self, wait: float, max_records: int = 500) -> list[Delivery]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        # Looking under the condition's lock: a message published before the wait began
        # is seen here, one published after wakes the wait.
        async with self.bus._changed:
            while True:
                deliveries = self._take(max_records)
                remaining = deadline - loop.time()
                if deliveries or remaining <= 0 or not self._started:
                    return deliveries
                try:
                    await asyncio.wait_for(self.bus._changed.wait(), remaining)
                except TimeoutError:
                    return self._take(max_records)

    def _take(self, max_records: int) -> list[Delivery]:
        deliveries: list[Delivery] = []
        for tp, position in self.positions.items():
            partition = self.bus._topics[tp[0]][tp[1]]
            position = max(position, partition.start)
            count = min(partition.end - position, max_records - len(deliveries))
            for index in range(position - partition.start, position - partition.start + count):
                record = partition.records[index]
                deliveries.append(
                    Delivery(
                        tp[0],
                        tp[1],
                        partition.start + index,
                        record.key,
                        record.value,
                        record.headers,
                    )
                )
            self.positions[tp] = position + count
            if len(deliveries) >= max_records:
                break
        if self.group is None and deliveries:
            for topic in {d.topic for d in deliveries}:
                self.bus._trim(topic)
        return deliveries

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if self.group is not None:
            self.bus._commit(self, offsets)

    def lag(self) -> dict[TopicPartition, int]:
        return {
            tp: self.bus._end_of(tp) - max(position, self.bus._start_of(tp))
            for tp, position in self.positions.items()
        }
