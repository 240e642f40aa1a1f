"""Cost analysis: refuses operations that would cost too much, before they execute.

Cost depends on the variables (page sizes), so it is computed at the start of execution
from a plan compiled once per document and operation; the rate limiter spends it.
"""

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    IntValueNode,
    ListValueNode,
    OperationDefinitionNode,
    VariableNode,
    get_named_type,
    get_nullable_type,
    get_operation_ast,
    is_introspection_type,
    is_list_type,
)
from graphql.execution.values import get_variable_values
from strawberry.extensions import SchemaExtension
from strawberry.types.execution import ExecutionContext, PreExecutionError
from strawberry.types.graphql import OperationType

from domains.keyset import MAX_PAGE_SIZE
from resolvers.relay import DEFAULT_PAGE_SIZE
from schema.guards.walker import Parent, Walk

QUERY_TOO_COSTLY = "QUERY_TOO_COSTLY"
TOO_MANY_REPRESENTATIONS = "TOO_MANY_REPRESENTATIONS"

# What a plain list (not a Relay connection's edges) is assumed to hold, for cost.
DEFAULT_LIST_MULTIPLIER = 10
CONNECTION_SUFFIX = "Connection"
ENTITIES_FIELD = "_entities"  # Federation's entity fetch, on every subgraph's Query
DEFAULT_MAX_REPRESENTATIONS = 100
# As many plans as the parser and validation caches hold documents.
PLAN_CACHE_SIZE = 1024
# graphql-core's own cap on variable coercion errors in `execute`.
MAX_COERCION_ERRORS = 50

ExtensionFactory = Callable[[], SchemaExtension]


class PageSizeError(Exception):
    """A connection asked for a page size outside 0..MAX_PAGE_SIZE, or for both ends."""


@dataclass(frozen=True, slots=True)
class _PageSize:
    """A connection's page size, as resolvers/relay.py will read `first`/`last`.

    Each is a literal, the name of a variable (a str), or None when not given.
    """

    first: int | str | None
    last: int | str | None

    def value(self, variables: Mapping[str, Any]) -> int:
        """The page size; one the resolvers would refuse is refused here, before they run."""
        first, last = self._read(self.first, variables), self._read(self.last, variables)
        if first is not None and last is not None:
            raise PageSizeError("pass either first or last, not both")
        for name, size in (("first", first), ("last", last)):
            if size is not None and not 0 <= size <= MAX_PAGE_SIZE:
                raise PageSizeError(f"{name} must be between 0 and {MAX_PAGE_SIZE}")
        return first if first is not None else last if last is not None else DEFAULT_PAGE_SIZE

    @staticmethod
    def _read(argument: int | str | None, variables: Mapping[str, Any]) -> int | None:
        value = variables.get(argument) if isinstance(argument, str) else argument
        return value if isinstance(value, int) else None


@dataclass(frozen=True, slots=True)
class _Representations:
    """How many entities a router asks `_entities` for: the length of its `representations`."""

    variable: str

    def value(self, variables: Mapping[str, Any]) -> int:
        given = variables.get(self.variable)
        return len(given) if isinstance(given, list) else 1


Multiplier = int | _PageSize | _Representations


@dataclass(frozen=True, slots=True)
class _Plan:
    """A cost that depends on variables: `fixed + sum(multiplier * plan)`."""

    fixed: int
    terms: tuple[tuple[Multiplier, "Plan"], ...]


Plan = int | _Plan


class _Sum:
    """Adds plans, folding whatever does not depend on variables into one number."""

    def __init__(self, fixed: int = 0) -> None:
        self.fixed = fixed
        self.terms: list[tuple[Multiplier, Plan]] = []

    def add(self, plan: Plan, multiplier: Multiplier = 1) -> None:
        if isinstance(plan, int) and isinstance(multiplier, int):
            self.fixed += multiplier * plan
        elif multiplier == 1 and isinstance(plan, _Plan):
            self.fixed += plan.fixed
            self.terms.extend(plan.terms)
        else:
            self.terms.append((multiplier, plan))

    def plan(self) -> Plan:
        return _Plan(self.fixed, tuple(self.terms)) if self.terms else self.fixed


def evaluate(plan: Plan, variables: Mapping[str, Any]) -> int:
    if isinstance(plan, int):
        return plan
    total = plan.fixed
    for multiplier, inner in plan.terms:
        times = multiplier if isinstance(multiplier, int) else multiplier.value(variables)
        total += times * evaluate(inner, variables)
    return total


def _argument(field: FieldNode, name: str) -> int | str | None:
    for argument in field.arguments or ():
        if argument.name.value == name:
            if isinstance(argument.value, IntValueNode):
                return int(argument.value.value)
            if isinstance(argument.value, VariableNode):
                return argument.value.name.value
    return None


def _page_size(field: FieldNode) -> Multiplier:
    size = _PageSize(_argument(field, "first"), _argument(field, "last"))
    if isinstance(size.first, str) or isinstance(size.last, str):
        return size  # depends on variables: evaluated per request
    try:
        return size.value({})
    except PageSizeError:
        return size  # refused when the plan is evaluated, with the request's error


def _list_length(field: FieldNode, page: Multiplier | None, default: int) -> Multiplier:
    """What a list field is assumed to hold: a connection's page for its `edges`; for
    `_entities`, one entity per representation the router sent (a router fetching one entity
    pays for one, not for `default`); else `default`."""
    if page is not None:
        return page
    if field.name.value == ENTITIES_FIELD:
        for argument in field.arguments or ():
            if argument.name.value == "representations":
                if isinstance(argument.value, ListValueNode):
                    return len(argument.value.values)
                if isinstance(argument.value, VariableNode):
                    return _Representations(argument.value.name.value)
    return default


class _Cost(Walk[Plan, Multiplier | None]):
    """The scope is the page size of the connection whose `edges` are being walked."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode, list_multiplier: int):
        super().__init__(schema, document)
        self.list_multiplier = list_multiplier

    def combine(self, values: Sequence[Plan]) -> Plan:
        total = _Sum()
        for value in values:
            total.add(value)
        return total.plan()

    def field(self, node: FieldNode, parent: Parent, page: Multiplier | None) -> Plan:
        if node.selection_set is None:
            return 1
        definition = self.definition(parent, node.name.value)
        if definition is None:  # validation reports it; count the selections regardless
            return self.combine((1, self.selections(node.selection_set, None, None)))
        named = get_named_type(definition.type)
        connection = named.name.endswith(CONNECTION_SUFFIX)
        inner = self.selections(node.selection_set, named, _page_size(node) if connection else None)
        total = _Sum(1)
        if is_list_type(get_nullable_type(definition.type)) and not (
            parent is not None and is_introspection_type(parent)
        ):
            total.add(inner, _list_length(node, page, self.list_multiplier))
        else:
            total.add(inner)
        return total.plan()


class _EntityCount(Walk[Plan, None]):
    """The representations an operation sends `_entities`, every alias of it counted: the
    cost multiplies by them too, but a limit of its own says what went wrong."""

    follows_types = False

    def combine(self, values: Sequence[Plan]) -> Plan:
        total = _Sum()
        for value in values:
            total.add(value)
        return total.plan()

    def field(self, node: FieldNode, parent: Parent, scope: None) -> Plan:
        if node.name.value != ENTITIES_FIELD:
            return 0  # `_entities` is a root field: nothing below another field reaches it
        total = _Sum()
        total.add(1, _list_length(node, None, 0))
        return total.plan()


def compile_representations(
    schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode
) -> Plan:
    """How many representations the operation's `_entities` fields receive, in all."""
    return _EntityCount(schema, document).operation(operation, None)


def compile_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    list_multiplier: int = DEFAULT_LIST_MULTIPLIER,
) -> Plan:
    """The operation's cost as a function of its variables (an int when it has none).

    Each field costs 1. A list field multiplies the cost of its selections: by the page
    size of the enclosing connection (a `...Connection` field's `first`/`last`) for the
    connection's `edges`, by the number of representations for `_entities`, else by
    `list_multiplier`. Lists inside introspection are not multiplied: the schema bounds
    them, and the depth limit their nesting. Fragments count once per spread;
    @skip/@include are ignored (an upper bound).
    """
    return _Cost(schema, document, list_multiplier).operation(operation, None)


def coerce_variables(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    variables: Mapping[str, Any] | None,
    *,
    hide_suggestions: bool = False,
) -> dict[str, Any] | list[GraphQLError]:
    """The variables as execution will see them (defaults applied), or graphql-core's errors."""
    if not operation.variable_definitions:
        return {}
    coerced = get_variable_values(
        schema,
        operation.variable_definitions,
        dict(variables or {}),
        max_errors=MAX_COERCION_ERRORS,
        hide_suggestions=hide_suggestions,
    )
    return coerced if isinstance(coerced, list) else coerced.coerced


def operation_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: dict[str, Any] | None,
    *,
    list_multiplier: int = DEFAULT_LIST_MULTIPLIER,
) -> int:
    """The cost of one operation of a valid document; raises GraphQLError on bad input."""
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        raise GraphQLError(f"no operation named {operation_name!r} in the document")
    values = coerce_variables(schema, operation, variables)
    if isinstance(values, list):
        raise values[0]
    return evaluate(compile_cost(schema, document, operation, list_multiplier), values)


@dataclass(frozen=True, slots=True)
class OperationPlans:
    """What the cost limit evaluates for one operation, given its variables."""

    operation: OperationDefinitionNode
    cost: Plan
    representations: Plan


class CostPlans:
    """Compiled plans, most recently used kept, keyed by schema, document and operation.

    Keys use object identity: the parser cache hands back the same document for the same
    query text, so a repeated operation costs one dictionary lookup and an evaluation.
    Entries hold their schema and document, so an id cannot be reused while cached.
    """

    def __init__(self, list_multiplier: int, maxsize: int = PLAN_CACHE_SIZE) -> None:
        self.list_multiplier = list_multiplier
        self.maxsize = maxsize
        self._entries: OrderedDict[
            tuple[int, int, str | None],
            tuple[GraphQLSchema, DocumentNode, OperationPlans],
        ] = OrderedDict()

    def get(
        self, schema: GraphQLSchema, document: DocumentNode, operation_name: str | None
    ) -> OperationPlans | None:
        key = (id(schema), id(document), operation_name)
        entry = self._entries.get(key)
        if entry is not None and entry[0] is schema and entry[1] is document:
            self._entries.move_to_end(key)
            return entry[2]
        operation = get_operation_ast(document, operation_name)
        if operation is None:
            return None
        plans = OperationPlans(
            operation,
            compile_cost(schema, document, operation, self.list_multiplier),
            compile_representations(schema, document, operation),
        )
        self._entries[key] = (schema, document, plans)
        if len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)
        return plans


class CostLimit(SchemaExtension):
    """Refuses operations costing more than `max_cost`, or sending `_entities` more than
    `max_representations`, before they execute.

    The cost is left on the context as `operation_cost` (when the context has that
    attribute) for the rate limiter. Variables are coerced here, since the cost depends
    on them; their errors are answered here too, without suggestions when those are off.
    """

    def __init__(
        self, *, max_cost: int, max_representations: int, plans: CostPlans, hide_suggestions: bool
    ) -> None:
        self.max_cost = max_cost
        self.max_representations = max_representations
        self.plans = plans
        self.hide_suggestions = hide_suggestions

    def on_execute(self) -> Iterator[None]:
        errors = self._check()
        if errors:
            self._refuse(errors)
        yield

    def _check(self) -> list[GraphQLError]:
        execution = self.execution_context
        document = execution.graphql_document
        if execution.result is not None or document is None:
            return []
        schema = execution.schema._schema
        plans = self.plans.get(schema, document, execution.operation_name)
        if plans is None:
            return []  # graphql-core reports the unknown operation
        operation = plans.operation
        variables = coerce_variables(
            schema, operation, execution.variables, hide_suggestions=self.hide_suggestions
        )
        if isinstance(variables, list):
            return variables
        representations = evaluate(plans.representations, variables)
        if representations > self.max_representations:
            message = (
                f"The operation sends _entities {representations} representations; "
                f"the limit is {self.max_representations}."
            )
            extensions = {
                "code": TOO_MANY_REPRESENTATIONS,
                "representations": representations,
                "maxRepresentations": self.max_representations,
            }
            return [GraphQLError(message, operation, extensions=extensions)]
        try:
            cost = evaluate(plans.cost, variables)
        except PageSizeError as error:
            return [GraphQLError(str(error), operation, extensions={"code": "BAD_USER_INPUT"})]
        if hasattr(execution.context, "operation_cost"):
            execution.context.operation_cost = cost
        if cost <= self.max_cost:
            return []
        message = f"Operation cost {cost} exceeds the limit of {self.max_cost}."
        extensions = {"code": QUERY_TOO_COSTLY, "cost": cost, "maxCost": self.max_cost}
        return [GraphQLError(message, operation, extensions=extensions)]

    def _refuse(self, errors: list[GraphQLError]) -> None:
        refuse(self.execution_context, errors)


def refuse(execution: ExecutionContext, errors: list[GraphQLError]) -> None:
    """Answers `errors` instead of executing: for an extension's `on_execute`."""
    # Strawberry subscribes regardless of a result set here, but answers an error
    # raised from this hook; queries and mutations skip execution given a result.
    if execution.operation_type is OperationType.SUBSCRIPTION:
        raise errors[0]
    execution.pre_execution_errors = errors
    execution.result = PreExecutionError(data=None, errors=errors)


def cost_limit(
    max_cost: int,
    *,
    max_representations: int = DEFAULT_MAX_REPRESENTATIONS,
    list_multiplier: int = DEFAULT_LIST_MULTIPLIER,
    suggestions: bool = True,
) -> ExtensionFactory:
    """A CostLimit factory for one schema's extension list; its plans are shared."""
    return partial(
        CostLimit,
        max_cost=max_cost,
        max_representations=max_representations,
        plans=CostPlans(list_multiplier),
        hide_suggestions=not suggestions,
    )
