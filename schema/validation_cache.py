"""Validation once per parsed document, found by the document's identity.

Strawberry's ValidationCache is an lru_cache over (schema, document, rules): each lookup
hashes the document, and graphql-core's nodes are frozen dataclasses, so that hash walks the
whole tree on every request (a tenth of a millisecond for the portal's first screen). The
parser cache hands back the same document for the same text, so its identity is the key;
each entry holds its schema and document, so an id is not reused while cached.
"""

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from graphql import DocumentNode, GraphQLError, GraphQLSchema
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

_Key = tuple[int, int, tuple[Any, ...]]
_Entry = tuple[GraphQLSchema, DocumentNode, list[GraphQLError]]


class DocumentValidations:
    """The errors of each (schema, document, rules) validated, most recently used kept."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[_Key, _Entry] = OrderedDict()

    def errors(
        self, schema: GraphQLSchema, document: DocumentNode, rules: tuple[Any, ...]
    ) -> list[GraphQLError]:
        key = (id(schema), id(document), rules)
        entry = self._entries.get(key)
        if entry is not None and entry[0] is schema and entry[1] is document:
            self._entries.move_to_end(key)
            return entry[2]
        errors = validate_document(schema, document, rules)
        self._entries[key] = (schema, document, errors)
        if len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)
        return errors


def validation_cache(maxsize: int) -> type[SchemaExtension]:
    """An extension class validating each document once, for every schema it serves."""
    validations = DocumentValidations(maxsize)

    class ValidationCache(SchemaExtension):
        def on_validate(self) -> Iterator[None]:
            context = self.execution_context
            context.pre_execution_errors = validations.errors(
                context.schema._schema,  # type: ignore[attr-defined]
                context.graphql_document,  # type: ignore[arg-type]
                context.validation_rules,
            )
            yield

    return ValidationCache
