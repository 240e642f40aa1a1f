"""Relay conventions: opaque global ids, opaque cursors, and connections over keyset pages."""

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from domains.errors import InvalidInput, NotFound
from domains.keyset import MAX_PAGE_SIZE, Ordering, Page, Window

R = TypeVar("R")

DEFAULT_PAGE_SIZE = 20


# base64's URL-safe alphabet from the standard one: urlsafe_b64encode, without its two
# layers of Python calls (a staff list encodes some three hundred ids).
_URL_SAFE = bytes.maketrans(b"+/", b"-_")


def to_global_id(type_name: str, pk: int) -> str:
    encoded = binascii.b2a_base64(f"{type_name}:{pk}".encode(), newline=False)
    return encoded.translate(_URL_SAFE).rstrip(b"=").decode()


def parse_global_id(global_id: str) -> tuple[str, int]:
    """The type and primary key an id names; keys are BIGINT identities, so anything
    outside 1..2^63-1 is malformed, refused here rather than by the database."""
    try:
        padded = global_id + "=" * (-len(global_id) % 4)
        type_name, _, pk = base64.urlsafe_b64decode(padded.encode()).decode().partition(":")
        key = int(pk)
    except (binascii.Error, UnicodeDecodeError, ValueError) as error:
        raise InvalidInput(f"malformed id: {global_id[:64]!r}") from error
    if not 0 < key <= MAX_ID:
        raise InvalidInput(f"malformed id: {global_id[:64]!r}")
    return type_name, key


MAX_ID = 2**63 - 1  # BIGINT


def pk_of(global_id: str, type_name: str) -> int:
    """The primary key of a `type_name` id; an id of another type is simply not found."""
    found_type, pk = parse_global_id(global_id)
    if found_type != type_name:
        raise NotFound(type_name.lower())
    return pk


def encode_cursor(key: tuple[Any, ...]) -> str:
    raw = json.dumps([value.isoformat() if hasattr(value, "isoformat") else value for value in key])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, ordering: Ordering) -> tuple[Any, ...]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, UnicodeDecodeError, ValueError) as error:
        raise InvalidInput("malformed cursor") from error
    if not isinstance(values, list):
        raise InvalidInput("malformed cursor")
    return ordering.parse_key(values)


def window_from_arguments(
    ordering: Ordering,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
) -> Window:
    if first is not None and last is not None:
        raise InvalidInput("pass either first or last, not both")
    for name, value in (("first", first), ("last", last)):
        if value is not None and not 0 <= value <= MAX_PAGE_SIZE:
            raise InvalidInput(f"{name} must be between 0 and {MAX_PAGE_SIZE}")
    return Window(
        limit=first if first is not None else last if last is not None else DEFAULT_PAGE_SIZE,
        after=decode_cursor(after, ordering) if after else None,
        before=decode_cursor(before, ordering) if before else None,
        backward=last is not None,
    )


@dataclass(frozen=True, slots=True)
class Edge(Generic[R]):
    """A row and its place in its ordering. The cursor is encoded only when read: most
    lists (an invoice's last three, say) never select their edges' cursors."""

    node: R
    ordering: Ordering

    @property
    def cursor(self) -> str:
        return encode_cursor(self.ordering.key_of(self.node))


@dataclass(frozen=True, slots=True)
class PageInfo(Generic[R]):
    has_next_page: bool
    has_previous_page: bool
    first: Edge[R] | None
    last: Edge[R] | None

    @property
    def start_cursor(self) -> str | None:
        return None if self.first is None else self.first.cursor

    @property
    def end_cursor(self) -> str | None:
        return None if self.last is None else self.last.cursor


@dataclass(frozen=True, slots=True)
class Connection(Generic[R]):
    edges: list[Edge[R]]
    page_info: PageInfo[R]


def connection_from_page(page: Page[R], ordering: Ordering) -> Connection[R]:
    edges = [Edge(row, ordering) for row in page.rows]
    return Connection(
        edges,
        PageInfo(
            has_next_page=page.has_next,
            has_previous_page=page.has_previous,
            first=edges[0] if edges else None,
            last=edges[-1] if edges else None,
        ),
    )
