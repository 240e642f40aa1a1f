"""Role checks for a whole operation before any resolver runs (table: schema/permissions.py)."""

from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from graphql import DocumentNode, FieldNode, GraphQLError, GraphQLSchema
from graphql import ExecutionResult as GraphQLExecutionResult
from strawberry.extensions import SchemaExtension

from schema.guards.walker import Parent, Walk, operations
from schema.permissions import Access, access_for, role_may

Coordinate = tuple[str, str]
_CACHE_SIZE = 1024


class _Coordinates(Walk[None, None]):
    """Collects into `found`: each fragment is walked once, so a set beats unions."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode) -> None:
        super().__init__(schema, document)
        self.found: set[Coordinate] = set()

    def combine(self, values: Sequence[None]) -> None:
        return None

    def field(self, node: FieldNode, parent: Parent, scope: None) -> None:
        name = node.name.value
        if name.startswith("__") or parent is None:
            return  # introspection has its own switch
        self.found.add((parent.name, name))
        self.below(node, parent, scope)


def operation_coordinates(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None
) -> frozenset[Coordinate]:
    """Every (type, field) the chosen operation selects, through fragments, once each."""
    walk = _Coordinates(schema, document)
    for operation in operations(document, operation_name):
        walk.operation(operation, None)
    return frozenset(walk.found)


def field_access(schema_source: Callable[[], GraphQLSchema]) -> type[SchemaExtension]:
    """An extension class refusing operations that select a field the viewer's role may not use.

    `schema_source` returns the graphql-core schema being served (known once it is built).
    Coordinates are cached per (query text, operation name): the text is the key, not the
    parsed document, so a cache hit can never describe another query. With them, what each
    role is denied, worked out once per role rather than on every request.
    """
    cache: OrderedDict[tuple[str, str | None], _Selected] = OrderedDict()

    def denied_to(
        role: object, query: str, operation_name: str | None, document: DocumentNode
    ) -> list[str]:
        key = (query, operation_name)
        selected = cache.get(key)
        if selected is None:
            coordinates = operation_coordinates(schema_source(), document, operation_name)
            selected = cache[key] = _Selected(coordinates, {})
            if len(cache) > _CACHE_SIZE:
                cache.popitem(last=False)
        denied = selected.denied.get(role)
        if denied is None:
            denied = selected.denied[role] = sorted(
                f"{type_name}.{field}"
                for type_name, field in selected.coordinates
                if not _allowed(access_for(type_name, field), role)
            )
        return denied

    class FieldAccess(SchemaExtension):
        def on_execute(self) -> Iterator[None]:
            context = self.execution_context
            if (
                context.result is None
                and context.graphql_document is not None
                and context.query is not None
            ):
                viewer = getattr(context.context, "viewer", None)
                role = viewer.role if viewer is not None else None
                denied = denied_to(
                    role, context.query, context.operation_name, context.graphql_document
                )
                if denied:
                    code = "UNAUTHENTICATED" if role is None else "FORBIDDEN"
                    message = (
                        "sign in first" if role is None else "your role may not use"
                    ) + f": {', '.join(denied)}"
                    context.result = GraphQLExecutionResult(
                        data=None, errors=[GraphQLError(message, extensions={"code": code})]
                    )
            yield

    return FieldAccess


@dataclass(frozen=True, slots=True)
class _Selected:
    """What an operation selects, and by role what of it the role may not use."""

    coordinates: frozenset[Coordinate]
    denied: dict[object, list[str]]


def _allowed(access: Access | None, role: object) -> bool:
    return access is not None and role_may(access, role)  # type: ignore[arg-type]
