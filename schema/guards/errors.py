"""Every GraphQL error leaves with `extensions.code`; unexpected ones are masked and logged."""

import contextlib
from collections.abc import Iterator

from graphql import GraphQLError
from strawberry.extensions import MaskErrors, ParserCache

from resolvers.errors import INTERNAL_MESSAGE, coded


class ErrorCodes(MaskErrors):
    """Domain errors keep their message and code; anything else becomes INTERNAL_SERVER_ERROR."""

    def __init__(self) -> None:
        super().__init__(error_message=INTERNAL_MESSAGE)

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        return [coded(error) for error in errors]


class CodedParserCache(ParserCache):
    """ParserCache that lets a syntax error surface where ErrorCodes can give it its code.

    Strawberry's ParserCache raises parse errors from its hook, outside the operation,
    so they would leave without `extensions.code`. On failure we leave the document unset
    and strawberry parses the query itself, inside the operation; only broken queries
    pay that second parse.
    """

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        with contextlib.suppress(GraphQLError):
            context.graphql_document = self.cached_parse_document(
                context.query, **context.parse_options
            )
        yield
