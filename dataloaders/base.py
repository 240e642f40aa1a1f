"""The loader mechanism: one declared read per batch of keys, on a pooled connection."""

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from domains.database import Database
from domains.keyset import Page
from domains.reads import Reader

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

Fetch = Callable[[Reader, Sequence[Any]], Awaitable[Mapping[Any, Any]]]


class Batching(Generic[K, V]):
    """`load(key)` gives the key's future, the same one for the whole request; the keys
    asked for in one turn of the event loop are loaded together (`load_batch`) once the
    turn ends, each batch on its own pooled connection, so batches of different loaders
    dispatched in the same turn run side by side instead of queueing on one connection.

    What strawberry's DataLoader does, less a done-callback on every key's future (there to
    cancel a batch all of whose callers gave up), which costs an event-loop callback per key
    loaded: for a staff list of 50 customers, their invoices and payments, the largest part
    of the event loop's work. A request's batches end with it anyway.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._futures: dict[K, asyncio.Future[V]] = {}
        self._waiting: list[tuple[K, asyncio.Future[V]]] | None = None
        self._running: set[asyncio.Task[None]] = set()

    def load(self, key: K) -> asyncio.Future[V]:
        future = self._futures.get(key)
        if future is not None and not future.cancelled():
            return future
        loop = asyncio.get_running_loop()
        future = self._futures[key] = loop.create_future()
        if self._waiting is None:
            self._waiting = []
            loop.call_soon(self._dispatch, loop)
        self._waiting.append((key, future))
        return future

    def prime(self, key: K, value: V) -> None:
        """Answers `key` with `value` for the rest of the request, unless it was asked for
        already: a write action's answer (the rows it committed, from its RETURNING) is
        not read again."""
        if key in self._futures:
            return
        future = self._futures[key] = asyncio.get_running_loop().create_future()
        future.set_result(value)

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._waiting = self._waiting or [], None
        task = loop.create_task(self._settle(batch))
        self._running.add(task)  # the loop keeps only a weak reference to its tasks
        task.add_done_callback(self._running.discard)

    async def _settle(self, batch: list[tuple[K, asyncio.Future[V]]]) -> None:
        try:
            values = await self.load_batch([key for key, _ in batch])
        except Exception as error:
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        except BaseException:  # cancelled with the request: so are its keys
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), value in zip(batch, values, strict=True):
            if not future.done():
                future.set_result(value)

    async def load_batch(self, keys: list[K]) -> list[V]:
        raise NotImplementedError


class Loader(Batching[K, V]):
    """Batches `load(key)` calls into one `fetch(reader, keys)`; a missing key loads None."""

    fetch: Fetch

    async def load_batch(self, keys: list[K]) -> list[V]:
        async with self.db.read() as reader:
            found = await type(self).fetch(reader, keys)
        return [found.get(key) for key in keys]


class PageLoader(Batching[tuple[Any, ...], Page[Any]]):
    """Loads one page per (parent, *arguments) key; keys with equal arguments share a statement."""

    fetch: Callable[..., Awaitable[Mapping[Any, Page[Any]]]]

    async def load_batch(self, keys: list[tuple[Any, ...]]) -> list[Page[Any]]:
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
