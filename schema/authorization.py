"""Role checks for a whole operation, before any resolver runs (declarations: permissions.py)."""

from collections import OrderedDict
from collections.abc import Callable, Iterator

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
)
from graphql import ExecutionResult as GraphQLExecutionResult
from strawberry.extensions import SchemaExtension

from schema.permissions import Access, access_for, role_may

Coordinate = tuple[str, str]
_CACHE_SIZE = 1024


def operation_coordinates(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None
) -> frozenset[Coordinate]:
    """Every (type, field) the chosen operation selects, through fragments, once each."""
    fragments: dict[str, FragmentDefinitionNode] = {}
    operations: list[OperationDefinitionNode] = []
    for definition in document.definitions:
        if isinstance(definition, FragmentDefinitionNode):
            fragments[definition.name.value] = definition
        elif isinstance(definition, OperationDefinitionNode):
            operations.append(definition)
    chosen = [
        op
        for op in operations
        if operation_name is None or (op.name is not None and op.name.value == operation_name)
    ]
    found: set[Coordinate] = set()
    seen_fragments: set[str] = set()

    def walk(selection_set: SelectionSetNode, parent: GraphQLNamedType | None) -> None:
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                name = selection.name.value
                if name.startswith("__") or parent is None:
                    continue  # introspection has its own switch
                found.add((parent.name, name))
                if selection.selection_set and isinstance(
                    parent, GraphQLObjectType | GraphQLInterfaceType
                ):
                    field = parent.fields.get(name)
                    child = get_named_type(field.type) if field else None
                    walk(selection.selection_set, child)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = schema.get_type(condition.name.value) if condition else parent
                walk(selection.selection_set, target)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in seen_fragments or name not in fragments:
                    continue
                seen_fragments.add(name)
                fragment = fragments[name]
                walk(fragment.selection_set, schema.get_type(fragment.type_condition.name.value))

    for operation in chosen:
        root = schema.get_root_type(operation.operation)
        walk(operation.selection_set, root)
    return frozenset(found)


def field_access(schema_source: Callable[[], GraphQLSchema]) -> type[SchemaExtension]:
    """An extension class refusing operations that select a field the viewer's role may not use.

    `schema_source` returns the graphql-core schema being served (known once it is built).
    Coordinates are cached per (query text, operation name): the text is the key, not the
    parsed document, so a cache hit can never describe another query.
    """
    cache: OrderedDict[tuple[str, str | None], frozenset[Coordinate]] = OrderedDict()

    def coordinates(query: str, operation_name: str | None, document: DocumentNode):
        key = (query, operation_name)
        found = cache.get(key)
        if found is None:
            found = operation_coordinates(schema_source(), document, operation_name)
            cache[key] = found
            if len(cache) > _CACHE_SIZE:
                cache.popitem(last=False)
        return found

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
                selected = coordinates(
                    context.query, context.operation_name, context.graphql_document
                )
                denied = sorted(
                    f"{type_name}.{field}"
                    for type_name, field in selected
                    if not _allowed(access_for(type_name, field), role)
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


def _allowed(access: Access | None, role: object) -> bool:
    return access is not None and role_may(access, role)  # type: ignore[arg-type]
