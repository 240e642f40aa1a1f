"""Every GraphQL error leaves with `extensions.code`; unexpected ones are masked and logged."""

import contextlib
import logging
from collections.abc import Iterator

from graphql import GraphQLError
from strawberry.extensions import MaskErrors, ParserCache

from domains.errors import DomainError

logger = logging.getLogger("kabinet.graphql")

INTERNAL_MESSAGE = "Internal server error"
# graphql-core's parser stops here when parse_options["max_tokens"] is exceeded.
PARSE_LIMIT_MESSAGE = "Syntax Error: Document contains more than "


def _code_for_request_error(error: GraphQLError) -> str:
    """Errors graphql-core raises before or while reading the request itself."""
    if error.message.startswith(PARSE_LIMIT_MESSAGE):
        return "TOO_MANY_TOKENS"
    if error.message.startswith("Syntax Error"):
        return "GRAPHQL_PARSE_FAILED"
    if error.message.startswith("Variable "):
        return "BAD_USER_INPUT"
    return "GRAPHQL_VALIDATION_FAILED"


class ErrorCodes(MaskErrors):
    """Domain errors keep their message and code; anything else becomes INTERNAL_SERVER_ERROR."""

    def __init__(self) -> None:
        super().__init__(error_message=INTERNAL_MESSAGE)

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        return [self._with_code(error) for error in errors]

    def _with_code(self, error: GraphQLError) -> GraphQLError:
        original = error.original_error
        extensions = dict(error.extensions or {})
        if isinstance(original, DomainError):
            message, extensions["code"] = original.message, original.code
            extensions.update(original.extensions)
        elif original is None or isinstance(original, GraphQLError):
            message = error.message
            extensions.setdefault("code", _code_for_request_error(error))
        else:
            logger.error(
                "unexpected error at %s", ".".join(map(str, error.path or ())), exc_info=original
            )
            message, extensions = INTERNAL_MESSAGE, {"code": "INTERNAL_SERVER_ERROR"}
        return GraphQLError(
            message,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions=extensions,
        )


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
