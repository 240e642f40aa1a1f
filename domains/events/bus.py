"""The event bus interface: Kafka or RabbitMQ in production, an in-process bus in the
embedded mode.

The implementations keep Kafka's semantics, so code above them cannot tell which it runs
on: topics split into partitions by message key (one key's messages stay in order); a
*group* shares a topic's messages among its members and resumes from its committed
offsets; a reader without a group (an API instance fanning events out to its own
subscribers) sees every message published after it started. One difference RabbitMQ
cannot hide: an exchange keeps nothing, so a group reads what was published after it was
first declared (`ensure_group`, or its first member's start), not a topic's whole history.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from domains.events.cloudevent import CloudEvent, InvalidEvent


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message read from a topic partition."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()

    def event(self) -> CloudEvent:
        """The CloudEvent inside; raises InvalidEvent for a poison message."""
        return CloudEvent.from_json(self.value)


class BusConsumer(Protocol):
    async def start(self) -> None:
        """Joins the group (if any) and takes its partitions."""

    async def stop(self) -> None:
        """Leaves the group; uncommitted messages go to the next member."""

    async def fetch(self, wait: float, max_records: int = 500) -> list[Delivery]:
        """The next messages, waiting up to `wait` seconds; [] when none came."""

    async def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Marks `(topic, partition) -> next offset to read` done for the group."""

    def lag(self) -> dict[tuple[str, int], int]:
        """Messages behind the end of each assigned partition, as last seen."""


class EventBus(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def ensure_topics(self, topics: Iterable[str]) -> None:
        """Creates the topics the broker lacks (it may have lost them: the relay calls this
        again after a failed publish)."""

    async def ensure_group(self, group: str, topics: Sequence[str]) -> None:
        """Has the broker keep the topics' messages for `group` from now on, before any
        member starts (RabbitMQ declares its queues; a Kafka topic, and the in-process
        bus, keep their messages for any group anyway)."""

    async def publish(
        self,
        topic: str,
        key: str,
        value: bytes,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """Returns once the broker has the message (acks=all); raises when it cannot."""

    async def publish_many(
        self, messages: Sequence[tuple[str, str, bytes]]
    ) -> list[Exception | None]:
        """Sends `(topic, key, value)` messages together, in order, and waits for all: for
        each, None once the broker has it, or what failed. The relay's batches: one
        round of sends and acknowledgements, not one per message."""

    def consumer(self, topics: Sequence[str], *, group: str | None) -> BusConsumer:
        """A reader of `topics`: in `group` from its committed offsets (the earliest for
        a new group), or without a group from the end of each partition."""


__all__ = ["BusConsumer", "CloudEvent", "Delivery", "EventBus", "InvalidEvent"]
