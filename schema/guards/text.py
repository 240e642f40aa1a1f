"""No NUL character in any text a client sends, literal or variable.

PostgreSQL text cannot hold U+0000: a string carrying one reached a statement (a sign-in's
email) and failed there as INTERNAL_SERVER_ERROR. One check per operation, before it
executes, answers BAD_USER_INPUT instead; the REST facade's models refuse the same.
"""

from collections.abc import Iterator
from typing import Any

from graphql import BREAK, DocumentNode, GraphQLError, StringValueNode, Visitor, visit
from strawberry.extensions import SchemaExtension

from schema.guards.cost import refuse

MESSAGE = "text may not contain NUL (\\u0000) characters"


class NulFreeText(SchemaExtension):
    def on_execute(self) -> Iterator[None]:
        execution = self.execution_context
        document = execution.graphql_document
        if (
            execution.result is None
            and document is not None
            and (_in_value(execution.variables) or _in_document(document))
        ):
            refuse(execution, [GraphQLError(MESSAGE, extensions={"code": "BAD_USER_INPUT"})])
        yield


class _Literals(Visitor):
    found = False

    def enter_string_value(self, node: StringValueNode, *_args: object) -> object:
        if "\x00" in node.value:
            self.found = True
            return BREAK
        return None


def _in_document(document: DocumentNode) -> bool:
    """Whether a literal holds NUL. One comes only from the character itself or a `\\u`
    escape, so a text with neither holds none and is not walked: walking the portal's first
    screen was about a tenth of its request's CPU."""
    source = document.loc.source.body if document.loc is not None else None
    if source is not None and "\x00" not in source and "\\u" not in source:
        return False
    literals = _Literals()
    visit(document, literals)
    return literals.found


def _in_value(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_in_value(key) or _in_value(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_in_value(item) for item in value)
    return False
