"""What a GraphQL error says to the client: every one leaves with `extensions.code`;
unexpected ones are masked and logged. Shared by the schema's error extension and by the
live feeds, which execute events outside an operation's extensions."""

import logging

from graphql import GraphQLError

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


def coded(error: GraphQLError) -> GraphQLError:
    """Domain errors keep their message and code; anything else becomes
    INTERNAL_SERVER_ERROR."""
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
