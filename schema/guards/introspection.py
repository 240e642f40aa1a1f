"""Introspection off in production: one coded error per introspection root selected."""

from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    get_named_type,
    is_introspection_type,
)
from graphql.language import SKIP
from graphql.validation import NoSchemaIntrospectionCustomRule

INTROSPECTION_DISABLED = "INTROSPECTION_DISABLED"


class NoIntrospectionRule(NoSchemaIntrospectionCustomRule):
    """graphql-core's rule, with a code and one error per introspection root, not per field."""

    def enter_fragment_definition(self, node: FragmentDefinitionNode, *_args: Any) -> Any:
        # A fragment on __Type etc. is only reachable below a root reported where it is.
        condition = self.context.schema.get_type(node.type_condition.name.value)
        return SKIP if condition is not None and is_introspection_type(condition) else None

    def enter_field(self, node: FieldNode, *_args: Any) -> Any:
        type_ = get_named_type(self.context.get_type())
        if type_ is not None and is_introspection_type(type_):
            self.report_error(
                GraphQLError(
                    f"Introspection is disabled: the query selects '{node.name.value}'.",
                    node,
                    extensions={"code": INTROSPECTION_DISABLED},
                )
            )
            return SKIP
        return None
