"""The guards' one document walker: each fragment measured once, however often spread."""

from collections import Counter

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLSchema,
    build_schema,
    get_operation_ast,
    parse,
)

from schema.guards.authorization import operation_coordinates
from schema.guards.cost import compile_cost
from schema.guards.limits import operation_aliases, operation_depth, operation_directives
from schema.guards.mutations import mutation_fields
from schema.guards.walker import Count, Parent

SCHEMA = build_schema(
    """
    type Query { item: Item items(first: Int): ItemConnection }
    type Mutation { ping: Boolean }
    type Item { name: String child: Item }
    type ItemConnection { edges: [ItemEdge] }
    type ItemEdge { node: Item }
    """
)
LEVELS = 20
# Each fragment of a bomb is reached twice from the one before: 2^(LEVELS + 1) - 1 spreads.
SPREADS = 2 ** (LEVELS + 1) - 1


def bomb(operation: str, on: str, body: str) -> DocumentNode:
    """Fragment i holds `body`, where NEXT spreads fragment i + 1 twice."""
    fragments = [
        f"fragment F{i} on {on} {{ {body.replace('NEXT', f'...F{i + 1} ...F{i + 1}')} }}"
        for i in range(LEVELS)
    ]
    fragments.append(f"fragment F{LEVELS} on {on} {{ {body.replace('NEXT', '')} }}")
    return parse(f"{operation} {' '.join(fragments)}")


class _Measured(Count):
    """Counts how often each fragment is measured."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode) -> None:
        self.measured: Counter[str] = Counter()
        super().__init__(schema, document)

    def fragment(self, definition: FragmentDefinitionNode, scope: None) -> int:
        self.measured[definition.name.value] += 1
        return super().fragment(definition, scope)

    def field(self, node: FieldNode, parent: Parent, scope: None) -> int:
        return self.below(node, parent, scope)


def test_a_fragment_bomb_measures_each_fragment_once():
    document = bomb("{ item { ...F0 } }", "Item", "child { x: name @include(if: true) NEXT }")
    operation = get_operation_ast(document)
    walk = _Measured(SCHEMA, document)

    walk.operation(operation, None)

    assert walk.measured == {f"F{i}": 1 for i in range(LEVELS + 1)}
    assert operation_aliases(SCHEMA, document, operation) == SPREADS
    assert operation_directives(SCHEMA, document, operation) == SPREADS
    assert operation_depth(SCHEMA, document, operation) == 1 + LEVELS + 2  # item, F0..., x
    assert compile_cost(SCHEMA, document, operation) == 1 + 2 * SPREADS  # child and x each
    assert operation_coordinates(SCHEMA, document, None) == {
        ("Query", "item"),
        ("Item", "child"),
        ("Item", "name"),
    }


def test_a_mutation_bomb_spends_every_root_field():
    document = bomb("mutation { ...F0 }", "Mutation", "ping NEXT")
    assert mutation_fields(SCHEMA, document, None) == SPREADS


def test_a_fragment_is_measured_once_per_page_size_it_is_spread_under():
    document = parse(
        "{ a: items(first: 2) { ...E } b: items(first: 5) { ...E } }"
        " fragment E on ItemConnection { edges { node { name } } }"
    )
    # Each connection 1 + edges (1 + page x (node 1 + name 1)).
    assert compile_cost(SCHEMA, document, get_operation_ast(document)) == (2 + 2 * 2) + (2 + 5 * 2)
