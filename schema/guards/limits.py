"""Depth, alias and directive limits, as validation rules (OWASP GraphQL).

They are pure functions of the document, so the ValidationCache keeps answering for
them. A directive repeated at one place stops validation at that one error. Tokens are
capped by the parser (`parse_options["max_tokens"]`; errors.py gives that error its code);
cost depends on the variables, so it is checked in cost.py.
"""

from collections.abc import Sequence
from functools import cache
from typing import Any, ClassVar

from graphql import (
    DirectiveNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
    Visitor,
    visit,
)
from graphql.language import BREAK, SKIP, Node
from graphql.validation.validate import ValidationAbortedError

from schema.guards.walker import Count, Parent, Walk

QUERY_TOO_DEEP = "QUERY_TOO_DEEP"
TOO_MANY_ALIASES = "TOO_MANY_ALIASES"
TOO_MANY_DIRECTIVES = "TOO_MANY_DIRECTIVES"
DIRECTIVE_REPEATED = "DIRECTIVE_REPEATED"


class _Depth(Walk[int, None]):
    def combine(self, values: Sequence[int]) -> int:
        return max(values, default=0)

    def field(self, node: FieldNode, parent: Parent, scope: None) -> int:
        # `__Type.ofType` unwraps List/NonNull: one object, no fan-out. GraphiQL's
        # introspection query follows it 9 times (14 levels in all); counting those hops
        # would refuse GraphiQL under any sensible depth limit.
        wrapper_hop = node.name.value == "ofType" and parent is not None and parent.name == "__Type"
        return (0 if wrapper_hop else 1) + self.below(node, parent, scope)


class _Aliases(Count):
    follows_types = False

    def field(self, node: FieldNode, parent: Parent, scope: None) -> int:
        return (node.alias is not None) + self.below(node, parent, scope)


class _Directives(Count):
    follows_types = False

    def operation(self, operation: OperationDefinitionNode, scope: None) -> int:
        variables = operation.variable_definitions or ()
        return (
            len(operation.directives or ())
            + sum(len(variable.directives or ()) for variable in variables)
            + super().operation(operation, scope)
        )

    def selections(self, node: SelectionSetNode, parent: Parent, scope: None) -> int:
        own = sum(len(selection.directives or ()) for selection in node.selections)
        return own + super().selections(node, parent, scope)

    def fragment(self, definition: FragmentDefinitionNode, scope: None) -> int:
        return len(definition.directives or ()) + super().fragment(definition, scope)

    def field(self, node: FieldNode, parent: Parent, scope: None) -> int:
        return self.below(node, parent, scope)


def operation_depth(
    schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode
) -> int:
    """Fields on the longest path from the root, through fragments; `{ me { id } }` is 2."""
    return _Depth(schema, document).operation(operation, None)


def operation_aliases(
    schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode
) -> int:
    """Aliased fields, each fragment counted once per spread."""
    return _Aliases(schema, document).operation(operation, None)


def operation_directives(
    schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode
) -> int:
    """Directives anywhere in the operation, each fragment counted once per spread."""
    return _Directives(schema, document).operation(operation, None)


def _operation_label(operation: OperationDefinitionNode) -> str:
    return f"Operation '{operation.name.value}'" if operation.name else "The operation"


class _OperationLimit(ValidationRule):
    """Measures each operation of the document once; reports those over the limit."""

    limit: ClassVar[int]
    code: ClassVar[str]

    def measure(self, operation: OperationDefinitionNode) -> int:
        raise NotImplementedError

    def describe(self, value: int) -> str:
        raise NotImplementedError

    def enter_operation_definition(self, node: OperationDefinitionNode, *_args: Any) -> Any:
        value = self.measure(node)
        if value > self.limit:
            message = f"{_operation_label(node)} {self.describe(value)}"
            self.report_error(GraphQLError(message, node, extensions={"code": self.code}))
        return SKIP


class _DepthLimit(_OperationLimit):
    code = QUERY_TOO_DEEP

    def measure(self, operation: OperationDefinitionNode) -> int:
        return operation_depth(self.context.schema, self.context.document, operation)

    def describe(self, value: int) -> str:
        return f"is {value} levels deep; the limit is {self.limit}."


class _AliasLimit(_OperationLimit):
    code = TOO_MANY_ALIASES

    def measure(self, operation: OperationDefinitionNode) -> int:
        return operation_aliases(self.context.schema, self.context.document, operation)

    def describe(self, value: int) -> str:
        return f"uses {value} aliases; the limit is {self.limit}."


class _DirectiveLimit(_OperationLimit):
    code = TOO_MANY_DIRECTIVES

    def measure(self, operation: OperationDefinitionNode) -> int:
        return operation_directives(self.context.schema, self.context.document, operation)

    def describe(self, value: int) -> str:
        return f"uses {value} directives; the limit is {self.limit}."


# One class per limit: rule classes are part of the ValidationCache key.
@cache
def max_depth_rule(limit: int) -> type[ValidationRule]:
    return type("MaxDepthRule", (_DepthLimit,), {"limit": limit})


@cache
def max_aliases_rule(limit: int) -> type[ValidationRule]:
    return type("MaxAliasesRule", (_AliasLimit,), {"limit": limit})


@cache
def max_directives_rule(limit: int) -> type[ValidationRule]:
    return type("MaxDirectivesRule", (_DirectiveLimit,), {"limit": limit})


class _FirstRepeated(Visitor):
    """Finds the first directive used twice at one place that the schema does not declare
    repeatable (an unknown one is not)."""

    def __init__(self, schema: GraphQLSchema) -> None:
        super().__init__()
        self.schema = schema
        self.found: DirectiveNode | None = None

    def enter(self, node: Node, *_args: Any) -> Any:
        seen: set[str] = set()
        for directive in getattr(node, "directives", None) or ():
            name = directive.name.value
            declared = self.schema.get_directive(name)
            if name in seen and not (declared is not None and declared.is_repeatable):
                self.found = directive
                return BREAK
            seen.add(name)
        return None


class RepeatedDirectivesRule(ValidationRule):
    """Refuses a document that repeats a directive at one place, with that error alone.

    Each repetition of an unknown directive would otherwise be an error of its own, and
    `__typename @aa@aa@aa...` an answer as long as the attacker likes ("directive
    overloading"). Such a document is invalid whatever else is wrong with it, so
    validation stops here, before the other rules look at it.
    """

    def enter_document(self, node: DocumentNode, *_args: Any) -> Any:
        search = _FirstRepeated(self.context.schema)
        visit(node, search)
        if search.found is not None:
            name = search.found.name.value
            raise ValidationAbortedError(
                f"The directive '@{name}' is repeated at one place; it may appear once.",
                search.found,
                extensions={"code": DIRECTIVE_REPEATED},
            )
        return None
