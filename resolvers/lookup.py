"""Resolvers that are one loader lookup per parent, declared as such.

Most fields below the root are "load this parent's X": a loader, a key taken from the parent
(and the field's arguments), and perhaps a step after (wrap a page as a connection, refuse a
row the viewer may not see). Declared with `@lookup`, such a field is still an ordinary
resolver to graphql-core, and the planned executor (schema/planned.py) can load it for a
whole level of parents at once, with one `load_many`, instead of running one coroutine per
parent.
"""

import functools
import inspect
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from resolvers.context import Context

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Lookup:
    """`then(loaded, parent, context, **arguments)` of what `loader` holds for
    `key(parent, **arguments)`; the loaded value itself when there is no `then`."""

    loader: type
    key: Callable[..., Hashable]
    then: Callable[..., Any] | None = None

    async def load_many(
        self, context: Context, parents: Sequence[Any], arguments: dict[str, Any]
    ) -> list[Any]:
        """What the loader holds for each parent's key. The keys' futures are awaited in
        turn rather than gathered (a callback per key): a batch settles all its futures at
        once, so this wakes once per batch."""
        loader = context.loaders.of(self.loader)
        loading = [loader.load(self.key(parent, **arguments)) for parent in parents]
        return [await each for each in loading]

    def finish(self, loaded: Any, parent: Any, context: Context, arguments: dict[str, Any]) -> Any:
        if self.then is None:
            return loaded
        return self.then(loaded, parent, context, **arguments)


def lookup(
    loader: type, key: Callable[..., Hashable], then: Callable[..., Any] | None = None
) -> Callable[[F], F]:
    """Makes the decorated function, whose signature (`root`, `info`, then the field's
    arguments) and types describe the field and whose body is not run, into the resolver
    for that lookup."""
    declared = Lookup(loader, key, then)

    def declare(signature: F) -> F:
        if list(inspect.signature(signature).parameters)[:2] != ["root", "info"]:
            raise TypeError(f"{signature.__qualname__}: a lookup takes (root, info, ...)")

        @functools.wraps(signature)
        async def resolve(root: Any, info: Any, **arguments: Any) -> Any:
            loaded = await info.context.loaders.of(loader).load(key(root, **arguments))
            return declared.finish(loaded, root, info.context, arguments)

        resolve.lookup = declared  # type: ignore[attr-defined]
        return resolve  # type: ignore[return-value]

    return declare


def lookup_of(function: Callable[..., Any]) -> Lookup | None:
    """The lookup a resolver function was declared as, if it was."""
    found = getattr(function, "lookup", None)
    return found if isinstance(found, Lookup) else None
