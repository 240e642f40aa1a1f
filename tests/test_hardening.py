"""Every GraphQL limit refuses with its own code before any resolver runs, and only then."""

import enum
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import strawberry
from graphql import get_introspection_query, parse
from strawberry.extensions import SchemaExtension
from strawberry.types.execution import ExecutionResult, PreExecutionError

from domains.errors import Unauthenticated
from domains.identity.models import Role
from gateway.settings import Settings
from schema.federation import build_composed, build_subgraph, standard_extensions
from schema.guards.cost import (
    CostPlans,
    compile_cost,
    compile_representations,
    evaluate,
    operation_cost,
)
from schema.guards.extensions import hardening_extensions
from schema.guards.limits import max_depth_rule

BENCH = Path(__file__).resolve().parent.parent / "bench"
DASHBOARD = (BENCH / "dashboard.graphql").read_text()
STAFF_CUSTOMERS = (BENCH / "staff_customers.graphql").read_text()


@dataclass
class Viewer:
    role: Role
    user_id: int = 1


STAFF = Viewer(Role.OPERATOR)
CUSTOMER = Viewer(Role.CUSTOMER)


@dataclass
class Ctx:
    """The cost slot, a log of resolver calls, and a viewer the role checks let through.

    Resolvers of the composed API stop at `signed_in`: no database is needed to see
    whether they were reached.
    """

    viewer: Viewer | None = None
    operation_cost: int = 0
    calls: list[str] = field(default_factory=list)

    @property
    def signed_in(self) -> Any:
        raise Unauthenticated("this test has no database behind the viewer")


class RecordResolvers(SchemaExtension):
    def resolve(self, _next: Any, root: Any, info: Any, *args: Any, **kwargs: Any) -> Any:
        info.context.calls.append(info.field_name)
        return _next(root, info, *args, **kwargs)


@strawberry.enum
class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


@strawberry.type
class Item:
    name: str

    @strawberry.field
    def child(self) -> "Item":
        return Item(name=f"{self.name}>")

    @strawberry.field
    def children(self) -> list["Item"]:
        return [Item(name=f"{self.name}.{i}") for i in range(2)]

    @strawberry.field
    def color(self, wanted: Color | None = None) -> Color:
        return wanted or Color.RED


@strawberry.type
class ItemEdge:
    node: Item
    cursor: str


@strawberry.type
class ItemConnection:
    edges: list[ItemEdge]


@strawberry.type
class Query:
    @strawberry.field
    def item(self) -> Item:
        return Item(name="a")

    @strawberry.field
    def items(self, first: int | None = None, last: int | None = None) -> ItemConnection:
        count = first if first is not None else last if last is not None else 20
        return ItemConnection(
            edges=[ItemEdge(node=Item(name=str(i)), cursor=str(i)) for i in range(count)]
        )


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def ticks(self, info: strawberry.Info) -> AsyncGenerator[Item, None]:
        info.context.calls.append("ticks")
        yield Item(name="tick")


LIMITS: dict[str, Any] = {
    "max_depth": 4,
    "max_aliases": 3,
    "max_tokens": 200,
    "max_directives": 2,
    "max_cost": 100,
    "introspection": True,
    "suggestions": True,
}


def small_schema(**overrides: Any) -> strawberry.Schema:
    extensions = [*standard_extensions(), *hardening_extensions(**(LIMITS | overrides))]
    return strawberry.Schema(
        query=Query, subscription=Subscription, extensions=[*extensions, RecordResolvers]
    )


async def run(
    schema: strawberry.Schema,
    query: str,
    variables: dict[str, Any] | None = None,
    viewer: Viewer | None = STAFF,
) -> tuple[ExecutionResult, Ctx]:
    context = Ctx(viewer)
    result = await schema.execute(query, variable_values=variables, context_value=context)
    return result, context


def codes(result: ExecutionResult) -> list[str]:
    return [(error.extensions or {}).get("code", "") for error in result.errors or ()]


async def assert_refused(
    schema: strawberry.Schema, query: str, code: str, variables: dict[str, Any] | None = None
) -> ExecutionResult:
    result, context = await run(schema, query, variables)
    assert codes(result) == [code], result.errors
    assert result.data is None
    assert context.calls == [], "no resolver may run for a refused operation"
    return result


async def assert_runs(
    schema: strawberry.Schema, query: str, variables: dict[str, Any] | None = None
) -> tuple[ExecutionResult, Ctx]:
    result, context = await run(schema, query, variables)
    assert result.errors is None, result.errors
    assert context.calls, "resolvers ran"
    return result, context


# Depth -----------------------------------------------------------------------------------


async def test_depth_limit_counts_fields_through_fragments_and_inline_fragments():
    schema = small_schema()
    await assert_runs(schema, "{ item { child { child { name } } } }")  # 4 levels
    result = await assert_refused(
        schema, "query Deep { item { child { child { child { name } } } } }", "QUERY_TOO_DEEP"
    )
    assert result.errors[0].message == "Operation 'Deep' is 5 levels deep; the limit is 4."
    await assert_refused(
        schema,
        """{ ...Top }
        fragment Top on Query { item { ... on Item { child { ...Leaf } } } }
        fragment Leaf on Item { child { child { name } } }""",
        "QUERY_TOO_DEEP",
    )


async def test_depth_rule_terminates_on_fragment_cycles():
    schema = small_schema()
    result, context = await run(
        schema,
        """{ item { ...A } }
        fragment A on Item { child { ...B } }
        fragment B on Item { child { ...A } }""",
    )
    assert set(codes(result)) == {"GRAPHQL_VALIDATION_FAILED"}  # the standard cycle rule
    assert context.calls == []


async def test_introspection_counts_towards_depth_except_type_wrapper_hops():
    schema = small_schema()
    await assert_refused(
        schema,
        "{ __schema { types { fields { type { fields { name } } } } } }",  # 6 levels
        "QUERY_TOO_DEEP",
    )
    result, _ = await run(
        schema,
        '{ __type(name: "Item") { fields { type { ofType { ofType { ofType { name } } } } } } }',
    )
    assert result.errors is None


def test_depth_rule_is_one_class_per_limit_for_the_validation_cache():
    assert max_depth_rule(7) is max_depth_rule(7)
    assert max_depth_rule(7) is not max_depth_rule(8)


# Aliases, directives, tokens -------------------------------------------------------------


async def test_alias_limit_counts_each_fragment_spread():
    schema = small_schema()
    await assert_runs(schema, "{ a: item { name } b: item { name } c: item { name } }")
    await assert_refused(
        schema,
        "{ a: item { name } b: item { name } c: item { name } d: item { name } }",
        "TOO_MANY_ALIASES",
    )
    # One alias in the operation, two in the fragment, spread twice: 5.
    await assert_refused(
        schema,
        "{ item { ...F } other: item { ...F } } fragment F on Item { x: name y: name }",
        "TOO_MANY_ALIASES",
    )


async def test_directive_limit():
    schema = small_schema()
    await assert_runs(
        schema, "{ item { name @include(if: true) child @skip(if: false) { name } } }"
    )
    result = await assert_refused(
        schema,
        "query D { item { name @include(if: true) child @skip(if: false) { ...F } } }"
        " fragment F on Item { name @include(if: true) }",
        "TOO_MANY_DIRECTIVES",
    )
    assert result.errors[0].message == "Operation 'D' uses 3 directives; the limit is 2."


@pytest.mark.parametrize("directive", ["@aa", "@include(if: true)"])
async def test_a_repeated_directive_is_one_error(directive: str):
    """Ten unknown directives in a row were ten errors ("directive overloading"); a known
    one repeated is refused the same way, before the directive limit counts them."""
    result = await assert_refused(
        small_schema(max_directives=20),
        "{ item { name " + directive * 10 + " } }",
        "DIRECTIVE_REPEATED",
    )
    assert len(result.errors) == 1
    name = directive.split("(")[0]
    assert result.errors[0].message == (
        f"The directive '{name}' is repeated at one place; it may appear once."
    )


async def test_token_limit():
    schema = small_schema(max_tokens=30)
    await assert_runs(schema, "{ item { name } }")
    result = await assert_refused(schema, "{ item { " + "name " * 40 + "} }", "TOO_MANY_TOKENS")
    assert "more than 30 tokens" in result.errors[0].message


# Cost ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "variables", "cost"),
    [
        ("{ item { name } }", None, 2),
        # item 1 + children (1 + 10 x (name 1 + child (1 + name 1))) = 1 + 31
        ("{ item { children { name child { name } } } }", None, 32),
        # items 1 + edges (1 + 5 x (cursor 1 + node (1 + name 1)))
        ("{ items(first: 5) { edges { cursor node { name } } } }", None, 17),
        # A fragment counts once per spread: 2 x (item 1 + children (1 + 10 x name 1)).
        (
            "{ item { ...F } other: item { ...F } } fragment F on Item { children { name } }",
            None,
            24,
        ),
        # first from a variable's default (3), from the variables, up to 100, or 20.
        ("query($n: Int = 3) { items(first: $n) { edges { node { name } } } }", None, 8),
        ("query($n: Int = 3) { items(first: $n) { edges { node { name } } } }", {"n": 40}, 82),
        ("query($n: Int) { items(last: $n) { edges { node { name } } } }", {"n": 100}, 202),
        ("query($n: Int) { items(first: $n) { edges { node { name } } } }", {"n": None}, 42),
    ],
)
def test_cost_model(query: str, variables: dict[str, Any] | None, cost: int):
    graphql_schema = small_schema()._schema
    assert operation_cost(graphql_schema, parse(query), None, variables) == cost


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("first: 500", "first must be between 0 and 100"),
        ("last: -1", "last must be between 0 and 100"),
        ("first: 1, last: 1", "pass either first or last, not both"),
    ],
)
async def test_page_sizes_the_resolvers_would_refuse_are_refused_first(
    arguments: str, message: str
):
    result, _ = await run(small_schema(), f"{{ items({arguments}) {{ edges {{ cursor }} }} }}")
    assert [error.message for error in result.errors] == [message]
    assert codes(result) == ["BAD_USER_INPUT"]
    assert isinstance(result, PreExecutionError)


async def test_cost_limit_depends_on_variables_and_is_kept_on_the_context():
    schema = small_schema()
    query = "query Page($n: Int) { items(first: $n) { edges { node { name } } } }"
    _, context = await assert_runs(schema, query, {"n": 49})  # 1 + 1 + 49 x 2 = 100
    assert context.operation_cost == 100
    # The same document again: its plan is cached, the cost is not.
    result, context = await run(schema, query, {"n": 50})
    assert codes(result) == ["QUERY_TOO_COSTLY"]
    assert isinstance(result, PreExecutionError)
    assert result.errors[0].message == "Operation cost 102 exceeds the limit of 100."
    assert result.errors[0].extensions == {"code": "QUERY_TOO_COSTLY", "cost": 102, "maxCost": 100}
    assert context.calls == []
    assert context.operation_cost == 102


async def test_cost_limit_refuses_subscriptions_before_they_start():
    schema = small_schema(max_cost=10)
    context = Ctx()
    stream = await schema.subscribe(
        "subscription { ticks { children { children { name } } } }", context_value=context
    )
    results = [result async for result in stream]
    assert [codes(result) for result in results] == [["QUERY_TOO_COSTLY"]]
    assert context.calls == []


async def test_invalid_variables_are_answered_before_execution_with_suggestions_as_configured():
    query = "query($c: Color) { item { color(wanted: $c) } }"
    shown, _ = await run(small_schema(), query, {"c": "REDD"})
    assert codes(shown) == ["BAD_USER_INPUT"]
    assert "Did you mean" in shown.errors[0].message
    hidden, context = await run(small_schema(suggestions=False), query, {"c": "REDD"})
    assert codes(hidden) == ["BAD_USER_INPUT"]
    assert "Did you mean" not in hidden.errors[0].message
    assert context.calls == []


def test_entities_representations_count_inline_and_in_variables():
    schema = build_subgraph("customers")._schema
    document = parse(
        'query($r: [_Any!]!) { a: _entities(representations: [{__typename: "Tariff", id: "1"},'
        ' {__typename: "Tariff", id: "2"}]) { __typename } ...F ...F }'
        " fragment F on Query { b: _entities(representations: $r) { __typename } }"
    )
    plan = compile_representations(schema, document, document.definitions[0])
    assert evaluate(plan, {"r": [{"__typename": "Tariff", "id": "1"}] * 5}) == 2 + 5 + 5


def test_cost_plans_are_compiled_once_per_document():
    graphql_schema = small_schema()._schema
    document = parse("query($n: Int) { items(first: $n) { edges { node { name } } } }")
    plans = CostPlans(list_multiplier=10)
    first = plans.get(graphql_schema, document, None)
    assert first is not None
    assert plans.get(graphql_schema, document, None) is not None
    assert plans.get(graphql_schema, document, None) is first
    static = plans.get(graphql_schema, parse("{ item { name } }"), None)
    assert static is not None
    assert (static.cost, static.representations) == (2, 0)


# Introspection and suggestions -----------------------------------------------------------


async def test_introspection_refused_when_disabled():
    closed = small_schema(introspection=False)
    result = await assert_refused(
        closed, "{ __schema { queryType { name } } }", "INTROSPECTION_DISABLED"
    )
    assert result.errors[0].message == "Introspection is disabled: the query selects '__schema'."
    await assert_refused(closed, '{ __type(name: "Item") { name } }', "INTROSPECTION_DISABLED")
    typename, _ = await run(closed, "{ __typename item { __typename } }")
    assert typename.errors is None
    opened, _ = await run(small_schema(), "{ __schema { queryType { name } } }")
    assert opened.data == {"__schema": {"queryType": {"name": "Query"}}}


@pytest.mark.parametrize(
    "query",
    [
        "{ itme { name } }",  # field
        "{ items(frist: 1) { edges { cursor } } }",  # argument
        "{ item { color(wanted: REDD) } }",  # enum value
        "query($c: Colr) { item { color(wanted: $c) } }",  # type
    ],
)
async def test_suggestions_only_when_enabled(query: str):
    shown, _ = await run(small_schema(), query)
    assert any("Did you mean" in error.message for error in shown.errors or ())
    # Same document, other rules: the validation cache keeps them apart.
    hidden, context = await run(small_schema(suggestions=False), query)
    assert hidden.errors
    assert not any("Did you mean" in error.message for error in hidden.errors)
    assert set(codes(hidden)) == {"GRAPHQL_VALIDATION_FAILED"}
    assert context.calls == []


# The composed API, with the limits as configured by default --------------------------------

DEFAULTS = {
    name: Settings.model_fields[f"graphql_{name}"].default
    for name in ("max_depth", "max_aliases", "max_tokens", "max_directives", "max_cost")
}


def composed(*, introspection: bool = True, suggestions: bool = True) -> strawberry.Schema:
    hardening = hardening_extensions(
        **DEFAULTS, introspection=introspection, suggestions=suggestions
    )
    return build_composed(extensions=[*standard_extensions(), *hardening, RecordResolvers])


@pytest.fixture(scope="module")
def api() -> strawberry.Schema:
    return composed()


def test_defaults_are_the_settings():
    assert DEFAULTS == {
        "max_depth": 10,
        "max_aliases": 30,
        "max_tokens": 2000,
        "max_directives": 20,
        "max_cost": 5000,
    }


def test_bench_query_costs(api: strawberry.Schema):
    graphql_schema = api._schema
    # Dashboard: me 1 + id 1 + email 1 + customer 1174 = 1177, where customer is
    #   1 + id, contractNum, fullName 3 + balance 3
    #   + contracts 1 + 10 x (id, address, status 3 + tariff (1 + 4 scalars + monthlyPrice 3)) = 111
    #   + subscriptions 1 + 10 x 3 = 31
    #   + invoices(first: 12) 1 + pageInfo 3 + edges (1 + 12 x (cursor 1 + node 84)) = 1025,
    #     node = 1 + 6 scalars + amount 3 + amountDue 3 + payments (1 + 10 x (4 + amount 3)) = 84
    assert operation_cost(graphql_schema, parse(DASHBOARD), None, None) == 1177
    # StaffCustomers, $first = 50 by default: customers 1 + pageInfo 3 + edges (1 + 50 x 95),
    #   node = 1 + 3 scalars + user 2 + balance 3 + invoices(first: 3) 86 = 95,
    #   invoices = 1 + edges (1 + 3 x node 28), node = 1 + 3 scalars + amount 3
    #   + payments (1 + 10 x 2) = 28
    assert operation_cost(graphql_schema, parse(STAFF_CUSTOMERS), None, None) == 5 + 50 * 95
    assert operation_cost(graphql_schema, parse(STAFF_CUSTOMERS), None, {"first": 10}) == 955
    assert operation_cost(graphql_schema, parse(STAFF_CUSTOMERS), None, {"first": 100}) == 9505


async def test_bench_queries_pass_every_default_limit(api: strawberry.Schema):
    for query, viewer, cost, root in (
        (DASHBOARD, CUSTOMER, 1177, "me"),
        (STAFF_CUSTOMERS, STAFF, 4755, "customers"),
    ):
        result, context = await run(api, query, viewer=viewer)
        assert context.operation_cost == cost
        assert context.calls == [root]  # executed, up to the resolver's `signed_in`
        assert codes(result) == ["UNAUTHENTICATED"]


async def test_staff_customers_with_a_full_page_costs_too_much(api: strawberry.Schema):
    result = await assert_refused(api, STAFF_CUSTOMERS, "QUERY_TOO_COSTLY", {"first": 100})
    assert result.errors[0].message == "Operation cost 9505 exceeds the limit of 5000."


async def test_composed_api_limits(api: strawberry.Schema):
    deep = "{ me { " + "customer { user { " * 5 + "id" + " } }" * 5 + " } }"  # 12 levels
    await assert_refused(api, deep, "QUERY_TOO_DEEP")
    aliases = "{ " + " ".join(f"t{i}: tariffs {{ id }}" for i in range(31)) + " }"
    await assert_refused(api, aliases, "TOO_MANY_ALIASES")
    directives = "{ me { " + " ".join(["id @include(if: true)"] * 21) + " } }"
    await assert_refused(api, directives, "TOO_MANY_DIRECTIVES")
    tokens = "{ me { " + "id " * 2000 + "} }"
    await assert_refused(api, tokens, "TOO_MANY_TOKENS")
    # Ten invoices and their payments for each of 100 customers: customers 1 + edges
    # (1 + 100 x (node 1 + invoices (1 + edges (1 + 10 x (node 1 + id 1 + payments 11)))))
    nested = (
        "{ customers(first: 100) { edges { node {"
        " invoices(first: 10) { edges { node { id payments { id } } } } } } } }"
    )
    result = await assert_refused(api, nested, "QUERY_TOO_COSTLY")
    assert result.errors[0].extensions["cost"] == 13302


async def test_graphiql_introspection_fits_the_default_limits_in_development(
    api: strawberry.Schema,
):
    # Nine `ofType` levels, as GraphiQL sends; well under the token and cost limits.
    query = get_introspection_query(descriptions=True)
    assert query.count("ofType") == 9
    result, _ = await run(api, query)
    assert result.errors is None
    assert result.data["__schema"]["queryType"]["name"] == "Query"
    document = parse(query)
    cost = compile_cost(api._schema, document, document.definitions[0])
    assert isinstance(cost, int)
    assert cost < DEFAULTS["max_cost"]


async def test_composed_api_in_production():
    production = composed(introspection=False, suggestions=False)
    await assert_refused(
        production, get_introspection_query(descriptions=True), "INTROSPECTION_DISABLED"
    )
    result, _ = await run(production, "{ tarifs { id } }")
    assert result.errors[0].message == "Cannot query field 'tarifs' on type 'Query'."
    development, _ = await run(composed(), "{ tarifs { id } }")
    assert "Did you mean 'tariffs'?" in development.errors[0].message
