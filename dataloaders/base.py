"""The loader mechanism: one declared read per batch of keys, on a pooled connection."""

from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from strawberry.dataloader import DataLoader

from domains.database import Database
from domains.keyset import Page
from domains.reads import Reader

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

Fetch = Callable[[Reader, Sequence[Any]], Awaitable[Mapping[Any, Any]]]


class Loader(DataLoader[K, V], Generic[K, V]):
    """Batches `load(key)` calls into one `fetch(reader, keys)`; a missing key loads None.

    Each batch borrows its own pooled connection, so loaders dispatched in the same
    tick run concurrently instead of queueing on one connection.
    """

    fetch: Fetch

    def __init__(self, db: Database) -> None:
        super().__init__(load_fn=self._load_batch)
        self.db = db

    async def _load_batch(self, keys: list[K]) -> list[V]:
        async with self.db.read() as reader:
            found = await type(self).fetch(reader, keys)
        return [found.get(key) for key in keys]


class PageLoader(DataLoader[tuple[Any, ...], Page[Any]]):
    """Loads one page per (parent, *arguments) key; keys with equal arguments share a statement."""

    fetch: Callable[..., Awaitable[Mapping[Any, Page[Any]]]]

    def __init__(self, db: Database) -> None:
        super().__init__(load_fn=self._load_batch)
        self.db = db

    async def _load_batch(self, keys: list[tuple[Any, ...]]) -> list[Page[Any]]:
        parents_by_arguments: dict[tuple[Any, ...], list[Any]] = {}
        for parent, *arguments in keys:
            parents_by_arguments.setdefault(tuple(arguments), []).append(parent)
        pages: dict[tuple[Any, ...], Page[Any]] = {}
        async with self.db.read() as reader:
            for arguments, parents in parents_by_arguments.items():
                found = await type(self).fetch(reader, parents, *arguments)
                for parent in parents:
                    pages[(parent, *arguments)] = found[parent]
        return [pages[key] for key in keys]
