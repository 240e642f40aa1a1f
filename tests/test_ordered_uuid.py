"""Time-ordered UUIDs: valid version 7 UUIDs that begin with the time they were made."""

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
