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

_VERSION = 0x7 << 76
_VARIANT = 0x2 << 62
_RANDOM = (1 << 80) - 1 & ~(0xF << 76) & ~(0x3 << 62)


def ordered_uuid() -> uuid.UUID:
    """A new version 7 UUID: 48 bits of milliseconds since the epoch, then random bits."""
    millis = time.time_ns() // 1_000_000
    random_bits = int.from_bytes(os.urandom(10), "big") & _RANDOM
    return uuid.UUID(int=millis << 80 | _VERSION | _VARIANT | random_bits)
