"""Time-ordered UUIDs (version 7, RFC 9562) for rows written by the hundred thousand.

A random UUID (version 4) as an indexed key puts each new row at a random place of its
index: at a million rows the index outgrows PostgreSQL's buffers, and nearly every insert
reads and dirties a page of its own (with a full-page image in the WAL after each
checkpoint). A version 7 UUID starts with the Unix time in milliseconds, so new keys land
at the index's end, on pages already in memory, and stay as unique as random ones (74
random bits per millisecond). The time in it orders keys; nothing decides by it, so it is
the system's time, not a Clock's.
"""

import os
import time
import uuid
from collections.abc import Iterator

_VERSION = 0x7 << 76
_VARIANT = 0x2 << 62
_RANDOM = (1 << 80) - 1 & ~(0xF << 76) & ~(0x3 << 62)
# Random bits are read from the system this many ids' worth at a time: one getrandom call
# cost about 5 µs here, most of an id's cost when the invoice run makes 140,000 at once.
_IDS_PER_READ = 1024
_BYTES = 10


def _random_bits() -> Iterator[int]:
    """Each id's 80 random bits (fewer are used), `_IDS_PER_READ` ids per os.urandom."""
    while True:
        block = os.urandom(_BYTES * _IDS_PER_READ)
        for offset in range(0, len(block), _BYTES):
            yield int.from_bytes(block[offset : offset + _BYTES], "big")


_random = _random_bits()


def _after_fork() -> None:
    """A forked child draws its own bits: the parent's unread ones would repeat there."""
    global _random
    _random = _random_bits()


os.register_at_fork(after_in_child=_after_fork)


def ordered_uuid() -> uuid.UUID:
    """A new version 7 UUID: 48 bits of milliseconds since the epoch, then random bits."""
    millis = time.time_ns() // 1_000_000
    return uuid.UUID(int=millis << 80 | _VERSION | _VARIANT | next(_random) & _RANDOM)
