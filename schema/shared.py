"""Types every subgraph may use: Money, Relay's Node and connections. Owned by no subgraph."""

from decimal import Decimal
from typing import Any, Generic, TypeVar

import strawberry

from resolvers.relay import to_global_id

T = TypeVar("T")


@strawberry.federation.type(shareable=True, description="An amount of money in a currency.")
class Money:
    amount: Decimal = strawberry.field(description="Exact decimal amount, as a string.")
    currency: str = strawberry.field(description="ISO 4217 currency code.")


@strawberry.interface(description="An object with a global id (Relay).")
class Node:
    id: strawberry.ID


@strawberry.federation.type(shareable=True, description="Where a page sits in its list.")
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.federation.type(shareable=True)
class Edge(Generic[T]):
    node: T
    cursor: str


@strawberry.federation.type(shareable=True)
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo


def node_id(type_name: str) -> Any:
    """The `id` field of a Node type: the row's primary key as an opaque global id."""

    def resolve(root: Any) -> strawberry.ID:
        return strawberry.ID(to_global_id(type_name, root.id))

    return strawberry.field(resolver=resolve, description=f"Global id of the {type_name}.")


def is_row(row_cls: type) -> Any:
    """`is_type_of` for a type whose runtime objects are domain rows of `row_cls`."""

    def is_type_of(cls: type, obj: Any, _info: Any) -> bool:
        return isinstance(obj, row_cls)

    is_type_of.row_class = row_cls  # type: ignore[attr-defined] - the plan's quick check
    return classmethod(is_type_of)
