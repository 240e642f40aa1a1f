"""Limits on what one operation may ask for, checked before any resolver runs (OWASP GraphQL).

Depth, aliases, directives, introspection and suggestions are validation rules: pure
functions of the document, so the ValidationCache keeps answering for them. Tokens are
capped by the parser (`parse_options["max_tokens"]`; schema/errors.py gives the error its
code). Cost depends on the variables (page sizes), so it is computed at the start of
execution from a plan compiled once per document and operation.
"""

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache, partial
from typing import Any, ClassVar

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SchemaMetaFieldDef,
    SelectionSetNode,
    TypeMetaFieldDef,
    TypeNameMetaFieldDef,
    ValidationContext,
    ValidationRule,
    VariableNode,
    get_named_type,
    get_nullable_type,
    get_operation_ast,
    is_introspection_type,
    is_list_type,
)
from graphql.execution.values import get_variable_values
from graphql.language import SKIP
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import AddValidationRules, MaxTokensLimiter, SchemaExtension
from strawberry.types.execution import PreExecutionError
from strawberry.types.graphql import OperationType

from domains.keyset import MAX_PAGE_SIZE
from resolvers.relay import DEFAULT_PAGE_SIZE

QUERY_TOO_DEEP = "QUERY_TOO_DEEP"
TOO_MANY_ALIASES = "TOO_MANY_ALIASES"
TOO_MANY_DIRECTIVES = "TOO_MANY_DIRECTIVES"
QUERY_TOO_COSTLY = "QUERY_TOO_COSTLY"
INTROSPECTION_DISABLED = "INTROSPECTION_DISABLED"

# What a plain list (not a Relay connection's edges) is assumed to hold, for cost.
DEFAULT_LIST_MULTIPLIER = 10
CONNECTION_SUFFIX = "Connection"
# As many plans as the parser and validation caches hold documents.
PLAN_CACHE_SIZE = 1024
# graphql-core's own cap on variable coercion errors in `execute`.
MAX_COERCION_ERRORS = 50

ExtensionFactory = Callable[[], SchemaExtension]


def _fragments(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }


class PerFragment:
    """Measures each fragment once per key, however often it is spread.

    A spread that closes a cycle measures 0: the standard rules reject cycles, this only
    has to terminate. Nesting itself is bounded by graphql-core (200 levels).
    """

    def __init__(self, document: DocumentNode, measure: Callable[..., Any]) -> None:
        self.fragments = _fragments(document)
        self._measure = measure
        self._memo: dict[tuple[Any, ...], Any] = {}
        self._active: set[str] = set()

    def __call__(self, name: str, *key: Any) -> Any:
        memo_key = (name, *key)
        if memo_key in self._memo:
            return self._memo[memo_key]
        fragment = self.fragments.get(name)
        if fragment is None or name in self._active:
            return 0
        self._active.add(name)
        try:
            value = self._measure(fragment, *key)
        finally:
            self._active.discard(name)
        self._memo[memo_key] = value
        return value


def _field_definition(
    schema: GraphQLSchema, parent: GraphQLNamedType | None, name: str
) -> GraphQLField | None:
    if name == "__typename":
        return TypeNameMetaFieldDef
    if parent is not None and parent is schema.query_type:
        if name == "__schema":
            return SchemaMetaFieldDef
        if name == "__type":
            return TypeMetaFieldDef
    if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
        return parent.fields.get(name)
    return None


def _field_type(
    schema: GraphQLSchema, parent: GraphQLNamedType | None, name: str
) -> GraphQLNamedType | None:
    definition = _field_definition(schema, parent, name)
    return get_named_type(definition.type) if definition is not None else None


def _type_condition(
    schema: GraphQLSchema, node: InlineFragmentNode | FragmentDefinitionNode, enclosing: Any
) -> GraphQLNamedType | None:
    if node.type_condition is None:
        return enclosing
    return schema.get_type(node.type_condition.name.value)


def _root_type(
    schema: GraphQLSchema, operation: OperationDefinitionNode
) -> GraphQLObjectType | None:
    return schema.get_root_type(operation.operation)


# Depth -----------------------------------------------------------------------------------


def _is_wrapper_hop(parent: GraphQLNamedType | None, name: str) -> bool:
    """`__Type.ofType` unwraps List/NonNull: one object, no fan-out.

    GraphiQL's introspection query follows it 9 times (14 levels in all); counting those
    hops would refuse GraphiQL under any sensible depth limit.
    """
    return name == "ofType" and parent is not None and parent.name == "__Type"


def operation_depth(
    schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode
) -> int:
    """Fields on the longest path from the root, through fragments; `{ me { id } }` is 2."""

    def selections(node: SelectionSetNode, parent: GraphQLNamedType | None) -> int:
        deepest = 0
        for selection in node.selections:
            if isinstance(selection, FieldNode):
                name = selection.name.value
                depth = 0 if _is_wrapper_hop(parent, name) else 1
                if selection.selection_set is not None:
                    depth += selections(selection.selection_set, _field_type(schema, parent, name))
            elif isinstance(selection, InlineFragmentNode):
                depth = selections(
                    selection.selection_set, _type_condition(schema, selection, parent)
                )
            else:
                depth = fragment(selection.name.value)
            deepest = max(deepest, depth)
        return deepest

    fragment = PerFragment(
        document,
        lambda definition: selections(
            definition.selection_set, _type_condition(schema, definition, None)
        ),
    )
    return selections(operation.selection_set, _root_type(schema, operation))


# Aliases and directives ------------------------------------------------------------------


def operation_aliases(document: DocumentNode, operation: OperationDefinitionNode) -> int:
    """Aliased fields, each fragment counted once per spread."""

    def selections(node: SelectionSetNode) -> int:
        count = 0
        for selection in node.selections:
            if isinstance(selection, FieldNode):
                count += selection.alias is not None
                if selection.selection_set is not None:
                    count += selections(selection.selection_set)
            elif isinstance(selection, InlineFragmentNode):
                count += selections(selection.selection_set)
            else:
                count += fragment(selection.name.value)
        return count

    fragment = PerFragment(document, lambda definition: selections(definition.selection_set))
    return selections(operation.selection_set)


def operation_directives(document: DocumentNode, operation: OperationDefinitionNode) -> int:
    """Directives anywhere in the operation, each fragment counted once per spread."""

    def selections(node: SelectionSetNode) -> int:
        count = 0
        for selection in node.selections:
            count += len(selection.directives or ())
            if isinstance(selection, FieldNode | InlineFragmentNode):
                if selection.selection_set is not None:
                    count += selections(selection.selection_set)
            else:
                count += fragment(selection.name.value)
        return count

    fragment = PerFragment(
        document,
        lambda definition: len(definition.directives or ()) + selections(definition.selection_set),
    )
    variables = operation.variable_definitions or ()
    return (
        len(operation.directives or ())
        + sum(len(variable.directives or ()) for variable in variables)
        + selections(operation.selection_set)
    )


# Validation rules ------------------------------------------------------------------------


def _operation_label(operation: OperationDefinitionNode) -> str:
    return f"Operation '{operation.name.value}'" if operation.name else "The operation"


class _OperationLimit(ValidationRule):
    """Measures each operation of the document once; reports those over the limit."""

    limit: ClassVar[int]
    code: ClassVar[str]

    def measure(self, operation: OperationDefinitionNode) -> int:
        raise NotImplementedError

    def describe(self, value: int) -> str:
        raise NotImplementedError

    def enter_operation_definition(self, node: OperationDefinitionNode, *_args: Any) -> Any:
        value = self.measure(node)
        if value > self.limit:
            message = f"{_operation_label(node)} {self.describe(value)}"
            self.report_error(GraphQLError(message, node, extensions={"code": self.code}))
        return SKIP


class _DepthLimit(_OperationLimit):
    code = QUERY_TOO_DEEP

    def measure(self, operation: OperationDefinitionNode) -> int:
        return operation_depth(self.context.schema, self.context.document, operation)

    def describe(self, value: int) -> str:
        return f"is {value} levels deep; the limit is {self.limit}."


class _AliasLimit(_OperationLimit):
    code = TOO_MANY_ALIASES

    def measure(self, operation: OperationDefinitionNode) -> int:
        return operation_aliases(self.context.document, operation)

    def describe(self, value: int) -> str:
        return f"uses {value} aliases; the limit is {self.limit}."


class _DirectiveLimit(_OperationLimit):
    code = TOO_MANY_DIRECTIVES

    def measure(self, operation: OperationDefinitionNode) -> int:
        return operation_directives(self.context.document, operation)

    def describe(self, value: int) -> str:
        return f"uses {value} directives; the limit is {self.limit}."


# One class per limit: rule classes are part of the ValidationCache key.
@cache
def max_depth_rule(limit: int) -> type[ValidationRule]:
    return type("MaxDepthRule", (_DepthLimit,), {"limit": limit})


@cache
def max_aliases_rule(limit: int) -> type[ValidationRule]:
    return type("MaxAliasesRule", (_AliasLimit,), {"limit": limit})


@cache
def max_directives_rule(limit: int) -> type[ValidationRule]:
    return type("MaxDirectivesRule", (_DirectiveLimit,), {"limit": limit})


class NoIntrospectionRule(NoSchemaIntrospectionCustomRule):
    """graphql-core's rule, with a code and one error per introspection root, not per field."""

    def enter_fragment_definition(self, node: FragmentDefinitionNode, *_args: Any) -> Any:
        # A fragment on __Type etc. is only reachable below a root reported where it is.
        condition = self.context.schema.get_type(node.type_condition.name.value)
        return SKIP if condition is not None and is_introspection_type(condition) else None

    def enter_field(self, node: FieldNode, *_args: Any) -> Any:
        type_ = get_named_type(self.context.get_type())
        if type_ is not None and is_introspection_type(type_):
            self.report_error(
                GraphQLError(
                    f"Introspection is disabled: the query selects '{node.name.value}'.",
                    node,
                    extensions={"code": INTROSPECTION_DISABLED},
                )
            )
            return SKIP
        return None


class HideSuggestionsRule(ValidationRule):
    """Drops "Did you mean ...?" from every validation message.

    graphql-core 3.3 omits suggestions when its ValidationContext has `hide_suggestions`
    (fields, arguments, types, enum values, input fields), but strawberry calls `validate`
    without that option. All rules of one validation share the context and are built
    before the walk, so setting it here covers every rule, in any order.
    """

    def __init__(self, context: ValidationContext) -> None:
        super().__init__(context)
        context._hide_suggestions = True  # the flag graphql-core's `validate` would set


# Cost ------------------------------------------------------------------------------------


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


Multiplier = int | _PageSize


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


def compile_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    list_multiplier: int = DEFAULT_LIST_MULTIPLIER,
) -> Plan:
    """The operation's cost as a function of its variables (an int when it has none).

    Each field costs 1. A list field multiplies the cost of its selections: by the page
    size of the enclosing connection (a `...Connection` field's `first`/`last`) for the
    connection's `edges`, else by `list_multiplier`. Lists inside introspection are not
    multiplied: the schema bounds them, and the depth limit their nesting. Fragments
    count once per spread; @skip/@include are ignored (an upper bound).
    """

    def selections(node: SelectionSetNode, parent: Any, page: Multiplier | None) -> Plan:
        total = _Sum()
        for selection in node.selections:
            if isinstance(selection, FieldNode):
                total.add(field(selection, parent, page))
            elif isinstance(selection, InlineFragmentNode):
                condition = _type_condition(schema, selection, parent)
                total.add(selections(selection.selection_set, condition, page))
            else:
                total.add(fragment(selection.name.value, page))
        return total.plan()

    def field(node: FieldNode, parent: Any, page: Multiplier | None) -> Plan:
        if node.selection_set is None:
            return 1
        definition = _field_definition(schema, parent, node.name.value)
        if definition is None:  # validation reports it; count the selections regardless
            return _add_one(selections(node.selection_set, None, None))
        named = get_named_type(definition.type)
        connection = named.name.endswith(CONNECTION_SUFFIX)
        inner = selections(node.selection_set, named, _page_size(node) if connection else None)
        total = _Sum(1)
        if is_list_type(get_nullable_type(definition.type)) and not (
            parent is not None and is_introspection_type(parent)
        ):
            total.add(inner, page if page is not None else list_multiplier)
        else:
            total.add(inner)
        return total.plan()

    fragment = PerFragment(
        document,
        lambda definition, page: selections(
            definition.selection_set, _type_condition(schema, definition, None), page
        ),
    )
    return selections(operation.selection_set, _root_type(schema, operation), None)


def _add_one(plan: Plan) -> Plan:
    total = _Sum(1)
    total.add(plan)
    return total.plan()


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
            tuple[GraphQLSchema, DocumentNode, OperationDefinitionNode, Plan],
        ] = OrderedDict()

    def get(
        self, schema: GraphQLSchema, document: DocumentNode, operation_name: str | None
    ) -> tuple[OperationDefinitionNode, Plan] | None:
        key = (id(schema), id(document), operation_name)
        entry = self._entries.get(key)
        if entry is not None and entry[0] is schema and entry[1] is document:
            self._entries.move_to_end(key)
            return entry[2], entry[3]
        operation = get_operation_ast(document, operation_name)
        if operation is None:
            return None
        plan = compile_cost(schema, document, operation, self.list_multiplier)
        self._entries[key] = (schema, document, operation, plan)
        if len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)
        return operation, plan


class CostLimit(SchemaExtension):
    """Refuses operations costing more than `max_cost` before they execute.

    The cost is left on the context as `operation_cost` (when the context has that
    attribute) for the rate limiter. Variables are coerced here, since the cost depends
    on them; their errors are answered here too, without suggestions when those are off.
    """

    def __init__(self, *, max_cost: int, plans: CostPlans, hide_suggestions: bool) -> None:
        self.max_cost = max_cost
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
        found = self.plans.get(schema, document, execution.operation_name)
        if found is None:
            return []  # graphql-core reports the unknown operation
        operation, plan = found
        variables = coerce_variables(
            schema, operation, execution.variables, hide_suggestions=self.hide_suggestions
        )
        if isinstance(variables, list):
            return variables
        try:
            cost = evaluate(plan, variables)
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
        execution = self.execution_context
        # Strawberry subscribes regardless of a result set here, but answers an error
        # raised from this hook; queries and mutations skip execution given a result.
        if execution.operation_type is OperationType.SUBSCRIPTION:
            raise errors[0]
        execution.pre_execution_errors = errors
        execution.result = PreExecutionError(data=None, errors=errors)


def cost_limit(
    max_cost: int,
    *,
    list_multiplier: int = DEFAULT_LIST_MULTIPLIER,
    suggestions: bool = True,
) -> ExtensionFactory:
    """A CostLimit factory for one schema's extension list; its plans are shared."""
    plans = CostPlans(list_multiplier)
    return partial(CostLimit, max_cost=max_cost, plans=plans, hide_suggestions=not suggestions)


def hardening_extensions(
    *,
    max_depth: int,
    max_aliases: int,
    max_tokens: int,
    max_directives: int,
    max_cost: int,
    introspection: bool,
    suggestions: bool,
    list_multiplier: int = DEFAULT_LIST_MULTIPLIER,
) -> list[ExtensionFactory]:
    """What to add after `standard_extensions()` so every limit holds before resolvers run."""
    rules: list[type[ValidationRule]] = [
        max_depth_rule(max_depth),
        max_aliases_rule(max_aliases),
        max_directives_rule(max_directives),
    ]
    if not introspection:
        rules.append(NoIntrospectionRule)
    if not suggestions:
        rules.append(HideSuggestionsRule)
    return [
        partial(AddValidationRules, rules),
        partial(MaxTokensLimiter, max_token_count=max_tokens),
        cost_limit(max_cost, list_multiplier=list_multiplier, suggestions=suggestions),
    ]
