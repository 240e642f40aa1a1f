"""One contract for every event bus: the in-process one, Kafka (Tansu here) and RabbitMQ."""

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from adapters.kafka_bus import KafkaBus
from adapters.rabbitmq_bus import RabbitMQBus
from domains.events.bus import BusConsumer, Delivery, EventBus
from domains.events.memory_bus import MemoryBus

PARTITIONS = 4
DEADLINE = 30.0


@pytest_asyncio.fixture(params=["memory", "kafka", "rabbitmq"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[EventBus]:
    the_bus: EventBus
    if request.param == "memory":
        the_bus = MemoryBus(partitions=PARTITIONS)
    elif request.param == "rabbitmq":
        the_bus = RabbitMQBus(
            request.getfixturevalue("rabbitmq_url"),
            partitions=PARTITIONS,
            dead_letter_suffix=".dlq",
        )
    else:
        the_bus = KafkaBus(
            request.getfixturevalue("kafka_bootstrap"),
            client_id="kabinet-test",
            idempotent=False,  # Tansu refuses InitProducerId
            partitions=PARTITIONS,
            session_timeout=6.0,  # the shortest Kafka allows by default: quicker joins
        )
    await the_bus.start()
    yield the_bus
    await the_bus.stop()


def fresh_topic() -> str:
    return f"test.bus.{secrets.token_hex(4)}"


async def read_until(
    consumer: BusConsumer,
    done: Callable[[list[Delivery]], bool],
    *,
    commit: bool = False,
) -> list[Delivery]:
    """Fetches until `done(everything read)`, failing after DEADLINE seconds."""
    seen: list[Delivery] = []
    async with asyncio.timeout(DEADLINE):
        while not done(seen):
            batch = await consumer.fetch(wait=0.2)
            seen += batch
            if commit and batch:
                await consumer.commit(next_offsets(batch))
    return seen


def next_offsets(batch: list[Delivery]) -> dict[tuple[str, int], int]:
    offsets: dict[tuple[str, int], int] = {}
    for delivery in batch:
        offsets[(delivery.topic, delivery.partition)] = delivery.offset + 1
    return offsets


def values(deliveries: list[Delivery]) -> list[bytes]:
    return [delivery.value for delivery in deliveries]


async def started(consumer: BusConsumer) -> BusConsumer:
    await consumer.start()
    return consumer


async def stopping(*consumers: BusConsumer) -> None:
    for consumer in consumers:
        await consumer.stop()


async def publish_all(bus: EventBus, topic: str, messages: list[tuple[str, bytes]]) -> None:
    for key, value in messages:
        await bus.publish(topic, key, value)


async def test_one_key_keeps_its_order_and_keys_spread_over_partitions(bus: EventBus):
    topic = fresh_topic()
    await bus.ensure_topics([topic])
    consumer = await started(bus.consumer([topic], group=f"g-{secrets.token_hex(4)}"))
    messages = [(f"customer:{n % 5}", f"{n % 5}:{n}".encode()) for n in range(50)]
    await publish_all(bus, topic, messages)
    try:
        seen = await read_until(consumer, lambda seen: len(seen) >= len(messages))
    finally:
        await stopping(consumer)
    assert sorted(values(seen)) == sorted(value for _, value in messages)
    for key in {key for key, _ in messages}:
        mine = [d for d in seen if d.key == key.encode()]
        assert values(mine) == [value for k, value in messages if k == key]
        assert len({d.partition for d in mine}) == 1, "one key, one partition"
        offsets = [d.offset for d in mine]
        assert offsets == sorted(offsets)
    assert len({d.partition for d in seen}) > 1


async def test_a_new_group_starts_at_the_earliest_and_resumes_from_its_commit(bus: EventBus):
    topic, group = fresh_topic(), f"g-{secrets.token_hex(4)}"
    await bus.ensure_topics([topic])
    await bus.ensure_group(group, [topic])  # RabbitMQ keeps messages from here on
    await publish_all(bus, topic, [("customer:1", b"first"), ("customer:1", b"second")])
    first = await started(bus.consumer([topic], group=group))
    try:
        [delivery, *_] = await read_until(first, lambda seen: len(seen) >= 1)
        await first.commit({(delivery.topic, delivery.partition): delivery.offset + 1})
    finally:
        await stopping(first)
    assert delivery.value == b"first"

    await bus.publish(topic, "customer:1", b"third")
    second = await started(bus.consumer([topic], group=group))
    try:
        seen = await read_until(second, lambda seen: len(seen) >= 2)
    finally:
        await stopping(second)
    assert values(seen) == [b"second", b"third"]


async def test_members_of_a_group_share_the_partitions(bus: EventBus):
    topic, group = fresh_topic(), f"g-{secrets.token_hex(4)}"
    await bus.ensure_topics([topic])
    members = [await started(bus.consumer([topic], group=group)) for _ in range(2)]
    got: list[list[Delivery]] = [[], []]
    sent: set[bytes] = set()
    try:
        # Publishing in rounds until both members have read something: the second member's
        # join reaches a Kafka group at the first member's next heartbeat, not at once.
        async with asyncio.timeout(DEADLINE):
            round_ = 0
            while not (got[0] and got[1]) or {*values(got[0]), *values(got[1])} != sent:
                if not (got[0] and got[1]):
                    round_ += 1
                    batch = [(f"customer:{n}", f"{round_}:{n}".encode()) for n in range(12)]
                    await publish_all(bus, topic, batch)
                    sent |= {value for _, value in batch}
                for index, member in enumerate(members):
                    fetched = await member.fetch(wait=0.1)
                    got[index] += fetched
                    if fetched:
                        await member.commit(next_offsets(fetched))
    finally:
        await stopping(*members)
    assert {*values(got[0]), *values(got[1])} == sent
    assert got[0], "the first member read nothing"
    assert got[1], "the second member read nothing"


async def test_what_a_leaving_member_did_not_commit_goes_to_the_one_that_stays(bus: EventBus):
    topic, group = fresh_topic(), f"g-{secrets.token_hex(4)}"
    await bus.ensure_topics([topic])
    await bus.ensure_group(group, [topic])
    leaving = await started(bus.consumer([topic], group=group))
    staying = await started(bus.consumer([topic], group=group))
    messages = [(f"customer:{n}", f"{n}".encode()) for n in range(12)]
    await publish_all(bus, topic, messages)
    try:
        read = await read_until(leaving, lambda seen: len(seen) >= 1)  # and not committed
    finally:
        await stopping(leaving)
    try:
        seen = await read_until(
            staying,
            lambda seen: set(values(seen)) == {value for _, value in messages},
            commit=True,
        )
    finally:
        await stopping(staying)
    assert set(values(read)) <= set(values(seen)), "read again by the member that stayed"


async def test_a_reader_without_a_group_sees_only_what_comes_after_it_started(bus: EventBus):
    topic = fresh_topic()
    await bus.ensure_topics([topic])
    await publish_all(bus, topic, [(f"customer:{n}", b"before") for n in range(8)])
    readers = [await started(bus.consumer([topic], group=None)) for _ in range(2)]
    await publish_all(bus, topic, [(f"customer:{n}", f"after:{n}".encode()) for n in range(8)])
    try:
        for reader in readers:
            seen = await read_until(reader, lambda seen: len(seen) >= 8)
            assert sorted(values(seen)) == sorted(f"after:{n}".encode() for n in range(8))
    finally:
        await stopping(*readers)


async def test_lag_counts_what_a_member_has_not_read(bus: EventBus):
    topic, group = fresh_topic(), f"g-{secrets.token_hex(4)}"
    await bus.ensure_topics([topic])
    await bus.ensure_group(group, [topic])
    await publish_all(bus, topic, [("customer:7", f"{n}".encode()) for n in range(10)])
    consumer = await started(bus.consumer([topic], group=group))
    try:
        first: list[Delivery] = []
        async with asyncio.timeout(DEADLINE):
            while not first:
                first = await consumer.fetch(wait=0.2, max_records=3)
        partition = (topic, first[0].partition)
        assert consumer.lag()[partition] == 10 - len(first)
        await read_until(consumer, lambda seen: len(seen) >= 10 - len(first))
        assert consumer.lag()[partition] == 0
    finally:
        await stopping(consumer)
