"""What a mutation spends from the mutation budget (gateway/ratelimit.py): its root fields."""

from graphql import DocumentNode, FieldNode, GraphQLSchema, OperationType

from schema.guards.walker import Count, Parent, operations


class _RootFields(Count):
    follows_types = False

    def field(self, node: FieldNode, parent: Parent, scope: None) -> int:
        return 1  # what a root field selects is the cost analysis's business


def mutation_fields(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None
) -> int:
    """Root fields of the mutation, through fragments: spreading aliases saves nothing."""
    for operation in operations(document, operation_name):
        if operation.operation is OperationType.MUTATION:
            return max(_RootFields(schema, document).operation(operation, None), 1)
    return 1
