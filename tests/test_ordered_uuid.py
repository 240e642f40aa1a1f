"""Time-ordered UUIDs: valid version 7 UUIDs that begin with the time they were made."""

import os
import time
import uuid

from domains.ordered_uuid import ordered_uuid


def test_an_ordered_uuid_is_a_version_7_uuid_of_rfc_9562() -> None:
    made = ordered_uuid()
    assert (made.version, made.variant) == (7, uuid.RFC_4122)
    assert uuid.UUID(str(made)) == made


def test_its_first_48_bits_are_the_unix_time_in_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    made = ordered_uuid()
    after = time.time_ns() // 1_000_000
    assert before <= made.int >> 80 <= after


def test_none_repeat() -> None:
    assert len({ordered_uuid() for _ in range(10_000)}) == 10_000


def test_a_forked_child_draws_bits_of_its_own() -> None:
    """The random bits are read ahead in blocks: a child must not reuse its parent's."""
    ordered_uuid()
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(reading)
        os.write(writing, ordered_uuid().bytes)
        os._exit(0)
    os.close(writing)
    theirs = os.read(reading, 16)
    os.close(reading)
    os.waitpid(child, 0)
    ours = ordered_uuid().bytes
    assert theirs[6:] != ours[6:]
