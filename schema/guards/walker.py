"""The one walk over a GraphQL operation; every guard's measurement is a fold of it.

Depth, aliases, directives, cost, the fields a role may use and the mutation budget each
say what a field is worth and how sibling selections add up; resolving fragments and
following the schema's types is done here, once, for all of them.
"""

from collections.abc import Hashable, Iterator, Sequence
from typing import ClassVar, Generic, TypeVar

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SchemaMetaFieldDef,
    SelectionSetNode,
    TypeMetaFieldDef,
    TypeNameMetaFieldDef,
    get_named_type,
)

T = TypeVar("T")
# What a subtree's measure depends on besides its own selections (cost: the enclosing
# connection's page size); a fragment is measured once per (name, scope).
Scope = TypeVar("Scope", bound=Hashable)
Parent = GraphQLNamedType | None


def operations(
    document: DocumentNode, operation_name: str | None
) -> Iterator[OperationDefinitionNode]:
    """The operations a request names: the one of that name, or all when it names none."""
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode) and (
            operation_name is None
            or (definition.name is not None and definition.name.value == operation_name)
        ):
            yield definition


class Walk(Generic[T, Scope]):
    """A fold over one operation's selections, through fragments, with each field's type.

    Subclasses say what a field is worth (`field`, adding `below` for what it selects)
    and how siblings combine (`combine`). A fragment is measured once per (name, scope) however
    often it is spread, so a fragment bomb (each fragment spreading the next twice) takes
    linear time. A spread that closes a cycle measures as nothing: the standard rules
    reject cycles, this only has to terminate. Nesting itself is bounded by graphql-core
    (200 levels).
    """

    # A measure that never looks at types (aliases, directives) skips finding them.
    follows_types: ClassVar[bool] = True

    def __init__(self, schema: GraphQLSchema, document: DocumentNode) -> None:
        self.schema = schema
        self._fragments = {
            definition.name.value: definition
            for definition in document.definitions
            if isinstance(definition, FragmentDefinitionNode)
        }
        self._memo: dict[tuple[str, Scope], T] = {}
        self._active: set[str] = set()
        self.nothing = self.combine(())  # what a leaf's selections, or a cycle, measure

    def field(self, node: FieldNode, parent: Parent, scope: Scope) -> T:
        raise NotImplementedError

    def combine(self, values: Sequence[T]) -> T:
        raise NotImplementedError

    def operation(self, operation: OperationDefinitionNode, scope: Scope) -> T:
        root = self.schema.get_root_type(operation.operation)
        return self.selections(operation.selection_set, root, scope)

    def selections(self, node: SelectionSetNode, parent: Parent, scope: Scope) -> T:
        values = []
        for selection in node.selections:
            if isinstance(selection, FieldNode):
                values.append(self.field(selection, parent, scope))
            elif isinstance(selection, InlineFragmentNode):
                inner = self.condition(selection, parent)
                values.append(self.selections(selection.selection_set, inner, scope))
            else:
                values.append(self.spread(selection.name.value, scope))
        return self.combine(values)

    def spread(self, name: str, scope: Scope) -> T:
        key = (name, scope)
        if key in self._memo:
            return self._memo[key]
        fragment = self._fragments.get(name)
        if fragment is None or name in self._active:
            return self.nothing
        self._active.add(name)
        try:
            value = self.fragment(fragment, scope)
        finally:
            self._active.discard(name)
        self._memo[key] = value
        return value

    def fragment(self, definition: FragmentDefinitionNode, scope: Scope) -> T:
        return self.selections(definition.selection_set, self.condition(definition, None), scope)

    def below(self, node: FieldNode, parent: Parent, scope: Scope) -> T:
        """The field's own selections, on the field's type; nothing for a leaf."""
        if node.selection_set is None:
            return self.nothing
        child = self.field_type(parent, node.name.value) if self.follows_types else None
        return self.selections(node.selection_set, child, scope)

    def definition(self, parent: Parent, name: str) -> GraphQLField | None:
        """The schema's field `name` of `parent`, meta-fields included; None if unknown."""
        if name == "__typename":
            return TypeNameMetaFieldDef
        if parent is not None and parent is self.schema.query_type:
            if name == "__schema":
                return SchemaMetaFieldDef
            if name == "__type":
                return TypeMetaFieldDef
        if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            return parent.fields.get(name)
        return None

    def field_type(self, parent: Parent, name: str) -> Parent:
        definition = self.definition(parent, name)
        return get_named_type(definition.type) if definition is not None else None

    def condition(
        self, node: InlineFragmentNode | FragmentDefinitionNode, enclosing: Parent
    ) -> Parent:
        if node.type_condition is None or not self.follows_types:
            return enclosing
        return self.schema.get_type(node.type_condition.name.value)


class Count(Walk[int, None]):
    """A walk whose siblings add up: aliases, directives, root fields."""

    def combine(self, values: Sequence[int]) -> int:
        return sum(values)
