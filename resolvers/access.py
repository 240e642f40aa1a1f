"""Loading a customer's object by id, under the one rule: a customer sees only their own."""

from typing import Any, Protocol, TypeVar

from strawberry import Info

from domains.errors import NotFound
from resolvers.context import Context

R = TypeVar("R")


class _ByIdLoader(Protocol[R]):
    async def load(self, key: int) -> R | None: ...


async def load_owned(info: Info[Context], loader: _ByIdLoader[R], pk: int, resource: str) -> R:
    """The row, if it exists and the viewer may see its customer's objects; else NOT_FOUND."""
    viewer = info.context.signed_in
    row: Any = await loader.load(pk)
    if row is None:
        raise NotFound(resource)
    viewer.check_customer(row.customer_id, resource)
    return row
