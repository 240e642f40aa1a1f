"""Deny by default: every field is declared in schema/permissions.py, and roles are enforced."""

import httpx
import pytest
from graphql import GraphQLInterfaceType, GraphQLObjectType, GraphQLSchema, parse

from schema.access import Access
from schema.federation import SUBGRAPHS, build_composed, build_subgraph
from schema.guards.authorization import operation_coordinates
from schema.permissions import DECLARED, access_for, declared
from schema.plugin import Domain
from tests.conftest import graphql, login


def _schemas() -> dict[str, GraphQLSchema]:
    built = {name: build_subgraph(name)._schema for name in SUBGRAPHS}
    built["composed"] = build_composed()._schema
    return built


@pytest.mark.parametrize(("name", "schema"), list(_schemas().items()))
def test_every_field_declares_who_may_use_it(name: str, schema: GraphQLSchema):
    roots = {
        t.name for t in (schema.query_type, schema.mutation_type, schema.subscription_type) if t
    }
    undeclared = []
    for type_name, graphql_type in schema.type_map.items():
        if type_name.startswith("__") or not isinstance(
            graphql_type, GraphQLObjectType | GraphQLInterfaceType
        ):
            continue
        for field_name in graphql_type.fields:
            coordinate = f"{type_name}.{field_name}"
            declared = (
                coordinate in DECLARED
                if type_name in roots
                else access_for(type_name, field_name) is not None
            )
            if not declared:
                undeclared.append(coordinate)
    assert not undeclared, f"{name}: declare these in schema/permissions.py: {undeclared}"


def test_coordinates_follow_fragments_and_the_chosen_operation():
    schema = build_composed()._schema
    document = parse(
        """
        query A { node(id: "x") { id ...Money ... on Invoice { amount { ...Amount } } } }
        fragment Money on Customer { balance { amount } }
        fragment Amount on Money { currency }
        query B { customers { edges { node { id } } } }
        """
    )
    assert operation_coordinates(schema, document, "A") == {
        ("Query", "node"),
        ("Node", "id"),
        ("Customer", "balance"),
        ("Money", "amount"),
        ("Invoice", "amount"),
        ("Money", "currency"),
    }
    assert ("Query", "customers") in operation_coordinates(schema, document, "B")


# (operation, variables, roles that may run it). Roles not listed must be refused.
OPERATIONS = [
    ("{ tariffs { name } }", None, {"anonymous", "customer", "operator", "admin"}),
    ("{ me { email } }", None, {"customer", "operator", "admin"}),
    ("{ invoices(first: 1) { edges { node { id } } } }", None, {"customer"}),
    ("{ customers(first: 1) { edges { node { id } } } }", None, {"operator", "admin"}),
    ("{ tariffs { id } customers(first: 1) { edges { cursor } } }", None, {"operator", "admin"}),
]
LOGINS = {
    "customer": "alice@example.com",
    "operator": "operator@example.com",
    "admin": "admin@example.com",
}


@pytest.mark.parametrize(("query", "variables", "allowed"), OPERATIONS)
async def test_role_matrix(
    sqlite_demo_client: httpx.AsyncClient, query: str, variables: dict | None, allowed: set[str]
):
    for role in ("anonymous", "customer", "operator", "admin"):
        token = await login(sqlite_demo_client, LOGINS[role]) if role in LOGINS else None
        body = await graphql(sqlite_demo_client, query, variables, token)
        if role in allowed:
            assert "errors" not in body, (role, body)
        else:
            expected = "UNAUTHENTICATED" if role == "anonymous" else "FORBIDDEN"
            assert [e["extensions"]["code"] for e in body["errors"]] == [expected], (role, body)
            assert "data" not in body, "refused before any resolver ran"


def test_a_coordinate_two_domains_declare_is_refused():
    ours = Domain(name="ours", access={"Query.thing": Access.STAFF})
    theirs = Domain(name="theirs", access={"Query.thing": Access.PUBLIC})
    with pytest.raises(ValueError, match=r"theirs declares access already declared.*Query\.thing"):
        declared([ours, theirs])
    assert declared([ours])["Query.thing"] is Access.STAFF
