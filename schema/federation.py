"""Builds each subgraph's schema and the composed one from the same type definitions.

A field belongs to the subgraph whose module (`schema/<subgraph>.py`) declares it;
`schema/shared.py` and `schema/entities.py` belong to none, so their fields go everywhere.
A subgraph's schema is the composed types with other subgraphs' fields filtered out,
except entity key fields, which every subgraph that mentions the entity needs. So each
field is written once, and the subgraphs and `/graphql` cannot drift apart.
"""

from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import cache, partial
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.federation.schema_directives import FederationDirective, Key
from strawberry.types.base import StrawberryContainer, StrawberryObjectDefinition
from strawberry.types.execution import ExecutionContext
from strawberry.types.field import StrawberryField
from strawberry.types.graphql import OperationType
from strawberry.types.lazy_type import LazyType
from strawberry.types.union import StrawberryUnion

from schema.domains import DOMAINS
from schema.entities import ENTITIES
from schema.extension_hooks import HooksRunner
from schema.guards.authorization import field_access
from schema.guards.errors import CodedParserCache, ErrorCodes
from schema.planned import Execution, executor_class
from schema.plugin import Domain
from schema.validation_cache import validation_cache

SUBGRAPHS: dict[str, Domain] = {domain.name: domain for domain in DOMAINS}


def _modules(domain: Domain) -> set[str]:
    """The modules that define a domain's types: its fields belong to its subgraph."""
    declared = (domain.query, domain.mutation, domain.subscription, *domain.nodes)
    return {t.__module__ for t in (*declared, *domain.entity_parts.values()) if t is not None}


_OWNER_BY_MODULE = {module: domain.name for domain in DOMAINS for module in _modules(domain)}

# Every Node type: the subgraph that serves `node` declares them all as entity stubs,
# so a router can route `node(id:)` there and fetch the fields from their owners.
NODE_TYPES: tuple[type, ...] = (
    *ENTITIES.values(),
    *(node for domain in DOMAINS for node in domain.nodes),
)
# What `node(id:)` calls for each type name a global id can carry.
NODE_LOADERS: dict[str, Callable[..., Any]] = {t.__name__: t.resolve_reference for t in NODE_TYPES}  # type: ignore[attr-defined]


def owner_of(field: StrawberryField) -> str | None:
    """The subgraph a field belongs to, or None for shared fields."""
    return _OWNER_BY_MODULE.get(getattr(field.origin, "__module__", ""))


def key_fields(type_definition: StrawberryObjectDefinition) -> set[str]:
    names: set[str] = set()
    for directive in type_definition.directives or ():
        if isinstance(directive, Key):
            names.update(str(directive.fields).replace("{", " ").replace("}", " ").split())
    return names


def _roots(domain: Domain) -> tuple[type | None, type | None, type | None]:
    return domain.query, domain.mutation, domain.subscription


def _all_roots() -> list[type | None]:
    return [root for domain in DOMAINS for root in _roots(domain)]


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
        validation_cache(_CACHE_SIZE),
    ]


class _ErrorsLoggedByExtension:
    """ErrorCodes logs what is unexpected; strawberry's default would log every user error.
    The extensions' hooks are entered by HooksRunner (schema/extension_hooks.py)."""

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        return None

    def create_extensions_runner(
        self, execution_context: ExecutionContext, extensions: list[SchemaExtension]
    ) -> HooksRunner:
        return HooksRunner(execution_context=execution_context, extensions=extensions)


class ComposedSchema(_ErrorsLoggedByExtension, strawberry.Schema):
    """The whole API in one schema, as served at /graphql: no federation machinery in it."""

    def _collect_schema_directives(self, *args: Any, **kwargs: Any) -> list[type]:
        collected = super()._collect_schema_directives(*args, **kwargs)
        return [d for d in collected if not issubclass(d, FederationDirective)]

    def _warn_for_federation_directives(self) -> None:
        """The @key directives are meant for the subgraphs; here they are dropped on purpose."""


def _named_types(type_: Any) -> Iterator[Any]:
    """The types behind a field's type: through lists, optionals, unions and lazy references."""
    while isinstance(type_, StrawberryContainer | LazyType):
        type_ = type_.of_type if isinstance(type_, StrawberryContainer) else type_.resolve_type()
    if isinstance(type_, StrawberryUnion):
        for member in type_.types:
            yield from _named_types(member)
    else:
        yield type_


def _entities_reached(start: Iterable[type | None]) -> list[type]:
    """Every entity (object type with a key) reached from `start` through fields, whoever
    owns them, as strawberry's own search goes: one a subgraph owns no field of is a stub."""
    seen: set[Any] = set()
    entities: list[type] = []
    stack = [type_ for type_ in start if type_ is not None]
    while stack:
        type_ = stack.pop()
        definition = getattr(type_, "__strawberry_definition__", None)
        if not isinstance(definition, StrawberryObjectDefinition) or type_ in seen:
            continue
        seen.add(type_)
        if definition.is_object_type and key_fields(definition):
            entities.append(type_)
        for field in definition.fields:
            stack.extend(_named_types(field.type))
    return entities


@cache
def _all_entities() -> tuple[type, ...]:
    """Every entity of the whole schema: the same for each subgraph, so walked once."""
    return tuple(_entities_reached([*_all_roots(), *NODE_TYPES]))


def entity_types(subgraph: str, roots: Iterable[type | None]) -> list[type]:
    """The entities `subgraph` must resolve through `_entities`: those its `roots` reach and
    those it adds fields to. Strawberry searches for them itself, but its search does not
    follow `strawberry.lazy` references (Customer, User): it left them, and what only they
    lead to, out of `_Entity`, and a router could not fetch their fields from this subgraph."""
    contributed = [
        type_
        for type_ in _all_entities()
        if any(owner_of(f) == subgraph for f in type_.__strawberry_definition__.fields)  # type: ignore[attr-defined]
    ]
    return _entities_reached([*roots, *contributed])


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


def build_subgraph(
    name: str,
    extensions: Iterable[Extension] | None = None,
    execution: Execution = Execution.PLANNED,
) -> SubgraphSchema:
    query, mutation, subscription = _roots(SUBGRAPHS[name])
    node_types = NODE_TYPES if _serves_node(query) else ()
    built: SubgraphSchema
    built = SubgraphSchema(
        name,
        query=query,
        mutation=mutation,
        subscription=subscription,
        types=[*node_types, *entity_types(name, [query, mutation, subscription, *node_types])],
        extensions=_with_access_checks(extensions, lambda: built),
        execution_context_class=executor_class(execution),
    )
    return built


def _serves_node(query: type | None) -> bool:
    fields = query.__strawberry_definition__.fields if query is not None else ()  # type: ignore[attr-defined]
    return "node" in {f.python_name for f in fields}


def build_composed(
    extensions: Iterable[Extension] | None = None, execution: Execution = Execution.PLANNED
) -> ComposedSchema:
    built: ComposedSchema
    built = ComposedSchema(
        query=_root("Query", [domain.query for domain in DOMAINS]),
        mutation=_root("Mutation", [domain.mutation for domain in DOMAINS]),
        subscription=_root("Subscription", [domain.subscription for domain in DOMAINS]),
        types=NODE_TYPES,
        extensions=_with_access_checks(extensions, lambda: built),
        execution_context_class=executor_class(execution),
    )
    return built
