"""Builds each subgraph's schema and the composed one from the same type definitions.

A field belongs to the subgraph whose module (`schema/<subgraph>.py`) declares it;
`schema/shared.py` and `schema/entities.py` belong to none, so their fields go everywhere.
A subgraph's schema is the composed types with other subgraphs' fields filtered out,
except entity key fields, which every subgraph that mentions the entity needs. So each
field is written once, and the subgraphs and `/graphql` cannot drift apart.
"""

from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from types import ModuleType
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension, ValidationCache
from strawberry.federation.schema_directives import FederationDirective, Key
from strawberry.types.base import StrawberryObjectDefinition
from strawberry.types.field import StrawberryField
from strawberry.types.graphql import OperationType

from schema import analytics, billing, customers, entities, identity
from schema.guards.authorization import field_access
from schema.guards.errors import CodedParserCache, ErrorCodes

SUBGRAPH_MODULES: dict[str, ModuleType] = {
    "identity": identity,
    "customers": customers,
    "billing": billing,
    "analytics": analytics,
}
_OWNER_BY_MODULE = {module.__name__: name for name, module in SUBGRAPH_MODULES.items()}

# Every Node type: the subgraph that serves `node` declares them all as entity stubs,
# so a router can route `node(id:)` there and fetch the fields from their owners.
NODE_TYPES: tuple[type, ...] = (
    entities.User,
    entities.Customer,
    customers.Contract,
    customers.Subscription,
    customers.Tariff,
    billing.Invoice,
    billing.Payment,
    billing.Transaction,
    billing.BalanceEntry,
)


def owner_of(field: StrawberryField) -> str | None:
    """The subgraph a field belongs to, or None for shared fields."""
    return _OWNER_BY_MODULE.get(getattr(field.origin, "__module__", ""))


def key_fields(type_definition: StrawberryObjectDefinition) -> set[str]:
    names: set[str] = set()
    for directive in type_definition.directives or ():
        if isinstance(directive, Key):
            names.update(str(directive.fields).replace("{", " ").replace("}", " ").split())
    return names


def _part(module: ModuleType, root: str) -> type | None:
    """The module's part of a root type: its class of that GraphQL name (customers has a
    `Subscription` class that is no root: a tariff's subscription, named apart in GraphQL)."""
    found = getattr(module, root, None)
    definition = getattr(found, "__strawberry_definition__", None)
    return found if definition is not None and definition.name == root else None


def _root(name: str, parts: Sequence[type | None]) -> type | None:
    parts = [part for part in parts if part is not None]
    if not parts:
        return None
    return strawberry.type(type(name, tuple(parts), {}))


Extension = type[SchemaExtension] | Callable[[], SchemaExtension]

# Operations a client sends are few and repeated: parse and validate each once.
_CACHE_SIZE = 1024


def standard_extensions() -> list[Extension]:
    return [
        ErrorCodes,
        partial(CodedParserCache, maxsize=_CACHE_SIZE),
        partial(ValidationCache, maxsize=_CACHE_SIZE),
    ]


class _ErrorsLoggedByExtension:
    """ErrorCodes logs what is unexpected; strawberry's default would log every user error."""

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        return None


class ComposedSchema(_ErrorsLoggedByExtension, strawberry.Schema):
    """The whole API in one schema, as served at /graphql: no federation machinery in it."""

    def _collect_schema_directives(self, *args: Any, **kwargs: Any) -> list[type]:
        collected = super()._collect_schema_directives(*args, **kwargs)
        return [d for d in collected if not issubclass(d, FederationDirective)]

    def _warn_for_federation_directives(self) -> None:
        """The @key directives are meant for the subgraphs; here they are dropped on purpose."""


class SubgraphSchema(_ErrorsLoggedByExtension, strawberry.federation.Schema):
    """A subgraph: the shared types, showing only this subgraph's fields and entity keys."""

    def __init__(self, subgraph: str, **options: Any) -> None:
        self.subgraph = subgraph
        super().__init__(**options)

    def get_fields(self, type_definition: StrawberryObjectDefinition) -> list[StrawberryField]:
        keys = key_fields(type_definition)
        return [
            field
            for field in type_definition.fields
            if owner_of(field) in (None, self.subgraph)
            or (field.graphql_name or field.python_name) in keys
            or field.python_name in keys
        ]


class RefusalsStopSubscriptions(SchemaExtension):
    """Last in line: a subscription an earlier extension refused (its result set) is not run.

    Strawberry skips execution for a result set before it only for queries and mutations;
    it subscribes regardless, but answers an error raised from this hook instead.
    """

    def on_execute(self) -> Iterator[None]:
        execution = self.execution_context
        result = execution.result
        if execution.operation_type is OperationType.SUBSCRIPTION and result is not None:
            raise (result.errors or [GraphQLError("operation refused")])[0]
        yield


def _with_access_checks(
    extensions: Iterable[Extension] | None, schema: Callable[[], strawberry.Schema]
) -> list[Extension]:
    """Role checks first (the cheapest refusal), then the given extensions (default: standard)."""
    chosen = standard_extensions() if extensions is None else list(extensions)
    return [field_access(lambda: schema()._schema), *chosen, RefusalsStopSubscriptions]


def build_subgraph(name: str, extensions: Iterable[Extension] | None = None) -> SubgraphSchema:
    module = SUBGRAPH_MODULES[name]
    built: SubgraphSchema
    built = SubgraphSchema(
        name,
        query=_part(module, "Query"),
        mutation=_part(module, "Mutation"),
        subscription=_part(module, "Subscription"),
        types=NODE_TYPES if hasattr(module, "Query") and _serves_node(module) else (),
        extensions=_with_access_checks(extensions, lambda: built),
    )
    return built


def _serves_node(module: ModuleType) -> bool:
    return "node" in {f.python_name for f in module.Query.__strawberry_definition__.fields}


def build_composed(extensions: Iterable[Extension] | None = None) -> ComposedSchema:
    modules = SUBGRAPH_MODULES.values()
    built: ComposedSchema
    built = ComposedSchema(
        query=_root("Query", [_part(m, "Query") for m in modules]),
        mutation=_root("Mutation", [_part(m, "Mutation") for m in modules]),
        subscription=_root("Subscription", [_part(m, "Subscription") for m in modules]),
        types=NODE_TYPES,
        extensions=_with_access_checks(extensions, lambda: built),
    )
    return built
