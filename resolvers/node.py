"""`node(id:)`: any object by its global id, under the same access rules as every other path."""

from typing import Any

import strawberry
from strawberry import Info

from domains.errors import NotFound
from resolvers.context import Context
from resolvers.relay import parse_global_id


async def node(info: Info[Context], id: strawberry.ID) -> Any:
    """Loads through the type's own `resolve_reference`, as `_entities` does; the types come
    from the domains' declarations (`Context.nodes`)."""
    type_name, _pk = parse_global_id(id)
    load = info.context.nodes.get(type_name)
    if load is None:
        raise NotFound("node")
    return await load(info, id)
