"""Planned execution: a query's selections resolved once into a plan, then run a depth at a time.

graphql-core executes field by field: for each of the two hundred fields of the portal's
first screen it builds a path and an info object, looks the field up, walks its type's
wrappers and, through strawberry, converts arguments and builds another info object, even
where the field is a plain attribute. A validated query selects the same fields every time,
so this executor resolves its selections once into a plan (per operation and per value of
the variables its @skip/@include read) and runs it a depth at a time: all objects at one
depth have their fields read in one pass (attributes with getattr; resolvers called as
strawberry would call them, their arguments converted once per request), a field declared
as a lookup (resolvers/lookup.py) is loaded for all its parents with one `load_many`, and the
depth's awaitables are awaited together, so loaders batch as they do under graphql-core.
The result is plain dicts and lists.

The plan covers the success path of queries over object types. graphql-core runs everything
else, unchanged: mutations and subscriptions, introspection, abstract types (`node`,
`_entities`), middleware; and any query in which something goes wrong (a resolver raises or
returns an error, a null lands in a non-null position, a value is not what its type says):
that query is run again by graphql-core, which words and places its errors, so an answer is
the same whichever path produced it. Query resolvers must therefore be free of side effects
(they are anyway: what a query changes, a retry would change twice). `Execution.CHECKED`
runs both paths on every planned query and raises on any difference; the test suite runs
that way (tests/test_planned.py).
"""

import inspect
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, NoReturn

from graphql import (
    FieldNode,
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLField,
    GraphQLID,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLString,
    OperationDefinitionNode,
    OperationType,
    Undefined,
    VariableNode,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
    visit,
)
from graphql.execution.collect_fields import (
    CollectedFields,
    FieldDetailsList,
    collect_fields,
    collect_subfields,
)
from graphql.execution.values import get_argument_values
from graphql.language import DirectiveNode, Visitor
from graphql.pyutils import Path, gather_with_cancel, is_iterable
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types.arguments import convert_arguments
from strawberry.types.field import StrawberryField

from resolvers.lookup import Lookup, lookup_of

_PLANS = 1024  # plans kept, least recently used dropped: one per operation a client sends
_TYPENAME, _ATTRIBUTE, _LOOKUP, _DIRECT, _RESOLVER = range(5)


class Execution(StrEnum):
    """How queries run: `KABINET_GRAPHQL_EXECUTION`."""

    PLANNED = "planned"  # the plan where it covers the query, graphql-core elsewhere
    GRAPHQL_CORE = "graphql-core"  # graphql-core always: the reference
    CHECKED = "checked"  # both, and any difference raises PlanMismatch (tests)


class PlanMismatch(AssertionError):
    """The planned answer differs from graphql-core's: a bug in the plan, never the query's."""


class _Unplanned(Exception):
    """This execution leaves the plan's success path: graphql-core runs the query instead."""


@dataclass(eq=False, slots=True)
class _Shape:
    """How a value completes: its null rule, then a leaf's coercion, a list's item, or an
    object's fields."""

    non_null: bool
    coerce: Callable[[Any], Any] | None = None
    leaf: GraphQLScalarType | GraphQLEnumType | None = None
    item: "_Shape | None" = None
    object: "_ObjectPlan | None" = None
    # A resolver below asks for an Info, whose path runs through this value.
    needs_path: bool = False


@dataclass(frozen=True, slots=True)
class _Call:
    """How strawberry would call a resolver function: the parent as `self` (positionally)
    or under its root/parent parameter names, the Info under its parameter's name."""

    function: Callable[..., Any]
    self_parent: bool
    parent_names: tuple[str, ...]
    info_name: str | None


@dataclass(eq=False, slots=True)
class _FieldPlan:
    """One response key: `_ATTRIBUTE` reads `attribute`, `_LOOKUP` loads `lookup` for a whole
    level of parents, `_DIRECT` calls `direct`'s function itself, `_RESOLVER` goes through
    strawberry's resolver (the definition's `resolve`)."""

    key: str
    kind: int
    owner: GraphQLObjectType
    definition: GraphQLField
    nodes: list[FieldNode]
    shape: _Shape
    attribute: str = ""
    lookup: Lookup | None = None
    direct: _Call | None = None
    strawberry_field: StrawberryField | None = None
    has_arguments: bool = False
    # Whether its path is needed: for an Info, or for the objects below it.
    needs_path: bool = field(init=False)

    def __post_init__(self) -> None:
        direct = self.direct
        asks_info = (
            self.kind == _RESOLVER
            or (direct is not None and direct.info_name is not None)
            or self.has_arguments  # converting them takes an Info
        )
        self.needs_path = asks_info or self.shape.needs_path


@dataclass(eq=False, slots=True)
class _ObjectPlan:
    type: GraphQLObjectType
    fields: list[_FieldPlan] = field(default_factory=list)
    # Reads the fields of a level's objects of this type: generated from `fields` (_compile).
    fill: Callable[..., None] = field(init=False)
    code: str = field(init=False, default="")  # fill's source, for reading and debugging


@dataclass(eq=False, slots=True)
class _Entry:
    """A cached operation: the variables its @skip/@include read, and a plan per their values.

    It holds its schema and operation, so their ids, its key, are not reused while cached."""

    schema: Any
    operation: OperationDefinitionNode
    directive_variables: tuple[str, ...]
    plans: dict[tuple[Any, ...], _ObjectPlan | None] = field(default_factory=dict)

    def holds(self, schema: Any, operation: OperationDefinitionNode) -> bool:
        return self.schema is schema and self.operation is operation


# Where a completed object goes (container[slot]), what it is, and its path.
_Slot = tuple[Any, Any, Any, Path | None]

# Keyed by the ids of the schema and the operation: the parser cache hands back the same
# document for the same text, and hashing an operation hashes its whole tree (graphql-core's
# nodes are frozen dataclasses), a tenth of a millisecond for the portal's first screen.
_cache: OrderedDict[tuple[int, int], _Entry] = OrderedDict()


def executor_class(execution: Execution) -> type[StrawberryGraphQLCoreExecutionContext] | None:
    """The executor strawberry is given: None leaves it its own (graphql-core's)."""
    if execution is Execution.GRAPHQL_CORE:
        return None
    return CheckedExecutor if execution is Execution.CHECKED else PlannedExecutor


class PlannedExecutor(StrawberryGraphQLCoreExecutionContext):
    def execute_operation(self, serially: bool | None = None) -> Any:
        plan = self._plan() if self._plannable(serially) else None
        if plan is None:
            return super().execute_operation(serially)
        return self._execute_planned(plan, serially)

    async def _execute_planned(self, plan: _ObjectPlan, serially: bool | None) -> Any:
        try:
            data = await self._planned_data(plan)
        except Exception:  # off the success path: graphql-core runs it and words the errors
            return await self._graphql_core(serially)
        return self.build_response(data)

    async def _planned_data(self, plan: _ObjectPlan) -> dict[str, Any]:
        self._arguments: dict[_FieldPlan, dict[str, Any]] = {}
        self._info_class = self.schema._strawberry_schema.config.info_class  # type: ignore[attr-defined]
        return await self._run(plan)

    async def _graphql_core(self, serially: bool | None) -> Any:
        result = super().execute_operation(serially)
        return await result if self.is_awaitable(result) else result

    def _plannable(self, serially: bool | None) -> bool:
        return (
            self.operation.operation is OperationType.QUERY
            and not serially
            and not (self.middleware_manager and self.middleware_manager.middlewares)
            and self.abort_signal is None
        )

    # Planning --------------------------------------------------------------------------------

    def _plan(self) -> _ObjectPlan | None:
        key = (id(self.schema), id(self.operation))
        entry = _cache.get(key)
        if entry is None or not entry.holds(self.schema, self.operation):
            entry = _Entry(self.schema, self.operation, _directive_variables(self))
            _cache[key] = entry
            if len(_cache) > _PLANS:
                _cache.popitem(last=False)
        else:
            _cache.move_to_end(key)
        coerced = self.variable_values.coerced
        values = tuple(coerced.get(name) for name in entry.directive_variables)
        if values not in entry.plans:
            entry.plans[values] = self._plan_operation()
        return entry.plans[values]

    def _plan_operation(self) -> _ObjectPlan | None:
        root = self.schema.get_root_type(OperationType.QUERY)
        if root is None:
            return None
        try:
            collected = collect_fields(
                self.schema,
                self.fragments,
                self.variable_values,
                root,
                self.operation,
                self.hide_suggestions,
            )
            return self._plan_object(root, collected)
        except _Unplanned:
            return None

    def _plan_object(self, type_: GraphQLObjectType, collected: CollectedFields) -> _ObjectPlan:
        if collected.new_defer_usages:
            raise _Unplanned
        plan = _ObjectPlan(type_)
        for key, details in collected.grouped_field_set.items():
            if any(detail.fragment_variable_values is not None for detail in details):
                raise _Unplanned
            node = details[0].node
            name = node.name.value
            nodes = [detail.node for detail in details]
            if name == "__typename":
                plan.fields.append(
                    _FieldPlan(key, _TYPENAME, type_, None, nodes, _Shape(True))  # type: ignore[arg-type]
                )
                continue
            if name.startswith("__"):
                raise _Unplanned  # introspection
            definition = type_.fields.get(name)
            if definition is None:
                continue  # graphql-core leaves unknown fields out too
            plan.fields.append(self._plan_field(key, type_, definition, details, nodes))
        _compile(plan)
        return plan

    def _plan_field(
        self,
        key: str,
        owner: GraphQLObjectType,
        definition: GraphQLField,
        details: FieldDetailsList,
        nodes: list[FieldNode],
    ) -> _FieldPlan:
        shape = self._shape(definition.type, details)
        resolve = definition.resolve
        if resolve is None:
            raise _Unplanned
        has_arguments = bool(definition.args or nodes[0].arguments)
        strawberry_field = definition.extensions.get("strawberry-definition")
        if getattr(resolve, "_is_default", False) and isinstance(strawberry_field, StrawberryField):
            if strawberry_field.default_resolver is not getattr:
                raise _Unplanned
            attribute = strawberry_field.python_name
            return _FieldPlan(key, _ATTRIBUTE, owner, definition, nodes, shape, attribute=attribute)
        if not _unwrapped(self, strawberry_field):
            return _FieldPlan(
                key, _RESOLVER, owner, definition, nodes, shape, has_arguments=has_arguments
            )
        resolver = strawberry_field.base_resolver
        declared = lookup_of(resolver.wrapped_func)
        return _FieldPlan(
            key,
            _DIRECT if declared is None else _LOOKUP,
            owner,
            definition,
            nodes,
            shape,
            lookup=declared,
            direct=_direct_call(resolver) if declared is None else None,
            strawberry_field=strawberry_field,
            has_arguments=has_arguments,
        )

    def _shape(self, type_: GraphQLOutputType, details: FieldDetailsList) -> _Shape:
        non_null = is_non_null_type(type_)
        if isinstance(type_, GraphQLNonNull):
            type_ = type_.of_type
        if is_list_type(type_):
            assert isinstance(type_, GraphQLList)
            item = self._shape(type_.of_type, details)
            return _Shape(non_null, item=item, needs_path=item.needs_path)
        if is_leaf_type(type_):
            return _Shape(non_null, coerce=_coercion(type_), leaf=type_)  # type: ignore[arg-type]
        if not is_object_type(type_):
            raise _Unplanned  # an interface or a union: the runtime type decides
        assert isinstance(type_, GraphQLObjectType)
        collected = collect_subfields(
            self.schema,
            self.fragments,
            self.variable_values,
            self.operation,
            type_,
            details,
            self.hide_suggestions,
        )
        planned = self._plan_object(type_, collected)
        needs_path = any(field.needs_path for field in planned.fields)
        return _Shape(non_null, object=planned, needs_path=needs_path)

    # Running ---------------------------------------------------------------------------------

    async def _run(self, plan: _ObjectPlan) -> dict[str, Any]:
        """The plan, a depth at a time: every object at a depth has its fields read in one
        pass, the depth's awaitables are awaited together (so its loaders batch), and the
        objects they lead to make the next depth."""
        top: dict[str, Any] = {}
        level: list[tuple[_ObjectPlan, list[_Slot]]] = [
            (plan, [(top, "data", self.root_value, None)])
        ]
        while level:
            below: dict[_ObjectPlan, list[_Slot]] = {}
            waiting: list[tuple[dict[str, Any], _FieldPlan, Path, Awaitable[Any]]] = []
            lookups: dict[_FieldPlan, list[tuple[dict[str, Any], Any, Path | None]]] = {}
            try:
                for object_plan, slots in level:
                    object_plan.fill(
                        slots, below, waiting, lookups, self._resolve, self.is_awaitable
                    )
            except Exception:
                for *_, awaitable in waiting:  # started resolvers, never to be awaited
                    if inspect.iscoroutine(awaitable):
                        awaitable.close()
                raise
            if waiting or lookups:
                await self._await_level(waiting, lookups, below)
            level = [(object_plan, slots) for object_plan, slots in below.items() if slots]
        return top["data"]

    async def _await_level(
        self,
        waiting: list[tuple[dict[str, Any], _FieldPlan, Path, Awaitable[Any]]],
        lookups: dict[_FieldPlan, list[tuple[dict[str, Any], Any, Path | None]]],
        below: dict[_ObjectPlan, list[_Slot]],
    ) -> None:
        """The level's resolver results and lookups, awaited together so their loaders
        batch; each lookup is one `load_many` for all its parents."""
        context = self.context_value
        batches = []
        for planned, entries in lookups.items():
            arguments = self._arguments_of(planned, entries[0][2])  # type: ignore[arg-type]
            parents = [source for _, source, _ in entries]
            loading = planned.lookup.load_many(context, parents, arguments)  # type: ignore[union-attr]
            batches.append((planned, entries, arguments, loading))
        awaitables = [awaitable for *_, awaitable in waiting] + [batch[3] for batch in batches]
        if len(awaitables) == 1:
            values = [await awaitables[0]]
        else:
            values = await gather_with_cancel(*awaitables)
        for (row, planned, field_path, _), value in zip(waiting, values, strict=False):
            _complete(planned.shape, value, row, planned.key, field_path, below)
        for (planned, entries, arguments, _), loaded in zip(
            batches, values[len(waiting) :], strict=True
        ):
            finish = planned.lookup.finish  # type: ignore[union-attr]
            for (row, source, field_path), value in zip(entries, loaded, strict=True):
                value = finish(value, source, context, arguments)
                _complete(planned.shape, value, row, planned.key, field_path, below)

    def _resolve(self, planned: _FieldPlan, source: Any, path: Path) -> Any:
        """The field's resolver called as strawberry would call it, with what it asks for."""
        direct = planned.direct
        if direct is None:
            info = self.build_resolve_info(planned.definition, planned.nodes, planned.owner, path)
            arguments = self._arguments_of(planned, path)
            return planned.definition.resolve(source, info, **arguments)  # type: ignore[misc]
        kwargs = {**self._arguments_of(planned, path)}
        for name in direct.parent_names:
            kwargs[name] = source
        if direct.info_name is not None:
            kwargs[direct.info_name] = self._info(planned, path)
        if direct.self_parent:
            return direct.function(source, **kwargs)
        return direct.function(**kwargs)

    def _info(self, planned: _FieldPlan, path: Path) -> Any:
        """The strawberry Info a resolver of this field would get at `path`."""
        info = self.build_resolve_info(planned.definition, planned.nodes, planned.owner, path)
        return self._info_class(_raw_info=info, _field=planned.strawberry_field)

    def _arguments_of(self, planned: _FieldPlan, path: Path) -> dict[str, Any]:
        """A field's arguments, coerced by graphql-core and, for a direct call or a lookup,
        converted by strawberry: the same for every parent, so done once per request."""
        if not planned.has_arguments:
            return {}
        arguments = self._arguments.get(planned)
        if arguments is None:
            arguments = get_argument_values(
                planned.definition,
                planned.nodes[0],
                self.variable_values,
                None,
                self.hide_suggestions,
            )
            if planned.strawberry_field is not None:
                strawberry_schema = self.schema._strawberry_schema  # type: ignore[attr-defined]
                arguments = convert_arguments(
                    arguments,
                    planned.strawberry_field.arguments,
                    scalar_registry=strawberry_schema.schema_converter.scalar_registry,
                    config=strawberry_schema.config,
                    info=self._info(planned, path),
                )
            self._arguments[planned] = arguments
        return arguments


class CheckedExecutor(PlannedExecutor):
    """Runs graphql-core after every planned answer and raises if the two differ.

    Counts what it compared, and keeps each difference, so a test suite can tell that its
    queries did take the plan and that none differed, whatever its tests looked at."""

    compared = 0
    mismatches: ClassVar[list[str]] = []

    async def _execute_planned(self, plan: _ObjectPlan, serially: bool | None) -> Any:
        try:
            data = await self._planned_data(plan)
        except Exception as error:
            # The plan leaves only what graphql-core answers with errors: anything else is
            # the plan's own failure, hidden by the fallback unless caught here.
            reference = await self._graphql_core(serially)
            if not reference.errors:
                self._mismatch(f"the plan failed ({error!r}) where graphql-core answered")
            return reference
        reference = await self._graphql_core(serially)
        CheckedExecutor.compared += 1
        if reference.errors or _wire(data) != _wire(reference.data):
            errors = [error.formatted for error in reference.errors or ()]
            self._mismatch(
                f"planned: {_wire(data)}\ngraphql-core: {_wire(reference.data)} {errors}"
            )
        return self.build_response(data)

    @staticmethod
    def _mismatch(difference: str) -> NoReturn:
        CheckedExecutor.mismatches.append(difference)
        raise PlanMismatch(difference)


def _complete(
    shape: _Shape,
    value: Any,
    container: Any,
    slot: Any,
    path: Path | None,
    below: dict[_ObjectPlan, list[_Slot]],
) -> None:
    """Puts `value`, completed as graphql-core would on its success path, at container[slot];
    objects are queued in `below`, for the next level."""
    if value is None or value is Undefined:
        if shape.non_null:
            raise _Unplanned
        container[slot] = None
        return
    if isinstance(value, Exception):
        raise _Unplanned
    coerce = shape.coerce
    if coerce is not None:
        coerced = coerce(value)
        if coerced is None or coerced is Undefined:
            raise _Unplanned
        container[slot] = coerced
        return
    item = shape.item
    if item is not None:
        if not is_iterable(value):
            raise _Unplanned
        elements = value if isinstance(value, list | tuple) else list(value)
        items: list[Any] = [None] * len(elements)
        container[slot] = items
        if item.object is None or not elements:
            for index, element in enumerate(elements):
                item_path = Path(path, index, None) if item.needs_path else None
                _complete(item, element, items, index, item_path, below)
            return
        # Objects (a connection's edges, say): queued for the next level here, as the call
        # for each would queue it; only a null or an error takes that call.
        queue = below.setdefault(item.object, [])
        for index, element in enumerate(elements):
            item_path = Path(path, index, None) if item.needs_path else None
            if element is None or element is Undefined or isinstance(element, Exception):
                _complete(item, element, items, index, item_path, below)
            else:
                queue.append((items, index, element, item_path))
        return
    container[slot] = None
    below.setdefault(shape.object, []).append((container, slot, value, path))  # type: ignore[arg-type]


def _coercion(type_: GraphQLScalarType | GraphQLEnumType) -> Callable[[Any], Any]:
    """The leaf type's output coercion. Strawberry's enums search their values one by one for
    the member's; a table built once gives the same name, and anything else goes to it."""
    wrapped = getattr(type_, "wrapped_cls", None)
    if not isinstance(type_, GraphQLEnumType) or wrapped is None:
        return type_.coerce_output_value
    names: dict[Any, str] = {}
    for name, value in type_.values.items():
        names.setdefault(value.value, name)  # the first name of a value, as strawberry's
    fallback = type_.coerce_output_value

    def coerce(value: Any) -> Any:
        if isinstance(value, wrapped):
            name = names.get(value.value)
            if name is not None:
                return name
        return fallback(value)

    return coerce


# Compiling -------------------------------------------------------------------------------
# An object plan's fields become one generated function, its `fill`, so the objects of a
# level are read without interpreting the plan field by field: an attribute is `source.name`,
# a resolver that needs no Info or arguments is called directly, and a value that is plainly
# its leaf's answer (a str for a String or an ID, a bool, an Int in range, a member of the
# enum) goes straight into the row. Any other value is left to `_complete`, which the
# interpreted plan called for every value, so the answer is the same. The fields' plans,
# shapes and functions reach it as the generated module's globals.

_FILL = """\
def fill(slots, below, waiting, lookups, resolve, is_awaitable):
{setup}    for container, slot, source, path in slots:
{check}        row = container[slot] = {{}}
{fields}"""
_INT_RANGE = "-2147483648 <= value <= 2147483647"  # GraphQL's Int: 32 bits, signed


def _compile(plan: _ObjectPlan) -> None:
    """Generates `plan.fill(slots, below, waiting, lookups, resolve, is_awaitable)`: each
    slot's object becomes its row, each field read now or left to the level's wait."""
    type_ = plan.type
    names: dict[str, Any] = {
        "Path": Path,
        "Unplanned": _Unplanned,
        "complete": _complete,
        "is_type_of": type_.is_type_of,
        "row_class": getattr(type_.is_type_of, "row_class", None),
    }
    setup, lines = [], []
    for index, planned in enumerate(plan.fields):
        names[f"field_{index}"] = planned
        names[f"shape_{index}"] = planned.shape
        key = repr(planned.key)
        if planned.kind == _TYPENAME:
            lines.append(f"row[{key}] = {type_.name!r}")
            continue
        path = "None"
        if planned.needs_path:
            path = f"path_{index}"
            lines.append(f"{path} = Path(path, {key}, {type_.name!r})")
        if planned.kind == _LOOKUP:
            setup.append(f"lookups_{index} = lookups.setdefault(field_{index}, [])")
            lines += [f"row[{key}] = None", f"lookups_{index}.append((row, source, {path}))"]
            continue
        direct = planned.direct
        if planned.kind == _ATTRIBUTE:
            lines.append(f"value = source.{planned.attribute}")
        elif direct is not None and direct.info_name is None and not planned.has_arguments:
            names[f"function_{index}"] = direct.function
            arguments = ["source"] if direct.self_parent else []
            arguments += [f"{name}=source" for name in direct.parent_names]
            lines.append(f"value = function_{index}({', '.join(arguments)})")
        else:
            lines.append(f"value = resolve(field_{index}, source, {path})")
        branches = []
        fast = _fast_leaf(planned.shape, index, names)
        if fast is not None:
            test, answer = fast
            branches.append((test, [f"row[{key}] = {answer}"]))
        if planned.kind != _ATTRIBUTE and not _never_awaitable(planned):
            waits = [f"row[{key}] = None", f"waiting.append((row, field_{index}, {path}, value))"]
            branches.append(("is_awaitable(value)", waits))
        completes = [f"complete(shape_{index}, value, row, {key}, {path}, below)"]
        lines += _branches(branches, completes)
    check = ""
    if type_.is_type_of is not None:
        test = "source.__class__ is not row_class and not is_type_of(source, None)"
        check = f"        if {test}:\n            raise Unplanned\n"
    code = _FILL.format(
        setup="".join(f"    {line}\n" for line in setup),
        check=check,
        fields="".join(f"        {line}\n" for line in lines),
    )
    exec(compile(code, f"<plan of {type_.name}>", "exec"), names)  # noqa: S102 - our own text
    plan.fill, plan.code = names["fill"], code


def _never_awaitable(planned: _FieldPlan) -> bool:
    """A plain function, called directly: what it returns is its value, never to be awaited
    (were it an awaitable after all, it would fit no shape and leave the plan)."""
    direct = planned.direct
    return (
        planned.kind == _DIRECT
        and direct is not None
        and not inspect.iscoroutinefunction(direct.function)
        and not inspect.isasyncgenfunction(direct.function)
    )


def _fast_leaf(shape: _Shape, index: int, names: dict[str, Any]) -> tuple[str, str] | None:
    """A test for a value that is plainly its leaf's answer, and that answer; None when the
    field is no leaf or has no such values (a custom scalar: its own coercion runs)."""
    leaf = shape.leaf
    if leaf is GraphQLString or leaf is GraphQLID:
        return "value.__class__ is str", "value"
    if leaf is GraphQLBoolean:
        return "value.__class__ is bool", "value"
    if leaf is GraphQLInt:
        return f"value.__class__ is int and {_INT_RANGE}", "value"
    wrapped = getattr(leaf, "wrapped_cls", None)
    if isinstance(leaf, GraphQLEnumType) and wrapped is not None:
        # Members by identity, named as _coercion names them (the first name of a value).
        first_names: dict[Any, str] = {}
        for name, value in leaf.values.items():
            first_names.setdefault(value.value, name)
        names[f"enum_{index}"] = {
            id(member): first_names[member.value]
            for member in wrapped
            if member.value in first_names
        }
        return f"(name := enum_{index}.get(id(value))) is not None", "name"
    return None


def _branches(branches: list[tuple[str, list[str]]], otherwise: list[str]) -> list[str]:
    """`if`/`elif` over `branches`, then `else` (or `otherwise` alone when there are none)."""
    if not branches:
        return otherwise
    lines = []
    for number, (test, body) in enumerate(branches):
        lines.append(f"{'if' if number == 0 else 'elif'} {test}:")
        lines += [f"    {line}" for line in body]
    return [*lines, "else:", *(f"    {line}" for line in otherwise)]


def _unwrapped(executor: PlannedExecutor, strawberry_field: Any) -> bool:
    """Whether nothing wraps the field's resolver function (no field extensions, so no
    permission classes; no exception handlers): then strawberry's layers add nothing to
    calling it, and the plan may call it, or load its lookup, itself."""
    if not isinstance(strawberry_field, StrawberryField) or strawberry_field.extensions:
        return False
    strawberry_schema = getattr(executor.schema, "_strawberry_schema", None)
    converter = getattr(strawberry_schema, "schema_converter", None)
    handlers = getattr(converter, "_get_field_exception_handlers", None)
    return (
        strawberry_field.base_resolver is not None
        and handlers is not None
        and not handlers(strawberry_field)
    )


def _direct_call(resolver: Any) -> _Call:
    """How strawberry passes the parent and the Info to this resolver function."""
    parents = (resolver.root_parameter, resolver.parent_parameter)
    return _Call(
        resolver.wrapped_func,
        self_parent=resolver.self_parameter is not None,
        parent_names=tuple(parameter.name for parameter in parents if parameter is not None),
        info_name=resolver.info_parameter.name if resolver.info_parameter else None,
    )


def _directive_variables(executor: PlannedExecutor) -> tuple[str, ...]:
    """The variables any @skip or @include of the operation or its fragments reads."""
    found: set[str] = set()

    class Directives(Visitor):
        def enter_directive(self, node: DirectiveNode, *_args: Any) -> None:
            if node.name.value in ("skip", "include"):
                for argument in node.arguments:
                    if isinstance(argument.value, VariableNode):
                        found.add(argument.value.name.value)

    visit(executor.operation, Directives())
    for fragment in executor.fragment_definitions.values():
        visit(fragment, Directives())
    return tuple(sorted(found))


def _wire(data: Any) -> str:
    """The data as it goes on the wire, key order included."""
    return json.dumps(data, separators=(",", ":"))
