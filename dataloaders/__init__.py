"""Per-request loaders: every customer and billing lookup goes through one of these."""

from typing import Any, TypeVar

from domains.database import Database

L = TypeVar("L")


class Loaders:
    """Built per request; each loader only on first use, so a small query pays for few.

    Keyed by loader class (`loaders.of(InvoicesByIdLoader)`): a domain's loaders need no
    registration anywhere, and a request shares one instance of each, so its batches merge.
    """

    __slots__ = ("_built", "db")

    def __init__(self, db: Database) -> None:
        self.db = db
        self._built: dict[type, Any] = {}

    def of(self, loader: type[L]) -> L:
        found = self._built.get(loader)
        if found is None:
            found = self._built[loader] = loader(self.db)  # type: ignore[call-arg]
        return found
