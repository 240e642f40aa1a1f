"""The exported subgraphs compose under Apollo Federation into the schema `/graphql` serves.

`kabinet schema export` writes what a router would be given; here Apollo's own composition
(tests/federation/compose.mjs) checks it, so the subgraphs and the in-process schema cannot drift.
"""

from pathlib import Path
from typing import Any

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLUnionType,
    build_schema,
    get_named_type,
    specified_scalar_types,
)

from schema.export import export_sdl
from tests.node import run_node

REPO_ROOT = Path(__file__).resolve().parent.parent
COMPOSE_SCRIPT = REPO_ROOT / "tests" / "federation" / "compose.mjs"
FEDERATION_V2_LINK = '@link(url: "https://specs.apollo.dev/federation/v2.'


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("schema-export")
    export_sdl(directory)
    return directory


@pytest.fixture(scope="module")
def subgraph_sdls(export_dir: Path) -> dict[str, str]:
    sdls = {path.stem: path.read_text() for path in (export_dir / "subgraphs").glob("*.graphql")}
    assert sdls, f"export_sdl wrote no subgraphs to {export_dir / 'subgraphs'}"
    return sdls


@pytest.fixture(scope="module")
def composition(export_dir: Path) -> dict[str, Any]:
    """compose.mjs's verdict: errors, hints, supergraphSdl and apiSchemaSdl."""
    return run_node(COMPOSE_SCRIPT, str(export_dir / "subgraphs"), needs="@apollo/composition")


def _messages(items: list[dict[str, str]]) -> str:
    return "\n".join(f"  [{item['code']}] {item['message']}" for item in items)


def outline(schema: GraphQLSchema) -> set[str]:
    """What a client can see of a schema, one line per type, field, argument, value or member."""
    lines: set[str] = set()
    for name, type_ in schema.type_map.items():
        if name.startswith("__") or name in specified_scalar_types:
            continue
        kind = type(type_).__name__.removeprefix("GraphQL").removesuffix("Type").lower()
        lines.add(f"{kind} {name}")
        if isinstance(type_, GraphQLObjectType | GraphQLInterfaceType):
            lines.update(f"{name} implements {iface.name}" for iface in type_.interfaces)
        if isinstance(type_, GraphQLObjectType | GraphQLInterfaceType | GraphQLInputObjectType):
            for field_name, field in type_.fields.items():
                lines.add(f"{name}.{field_name}")
                lines.update(f"{name}.{field_name}({arg}:)" for arg in getattr(field, "args", ()))
        elif isinstance(type_, GraphQLEnumType):
            lines.update(f"{name}.{value}" for value in type_.values)
        elif isinstance(type_, GraphQLUnionType):
            lines.update(f"{name} | {member.name}" for member in type_.types)
    return lines


def outline_differences(served: str, composed: str) -> str:
    """Empty when both SDLs show the same types, fields, arguments and values."""
    served_lines, composed_lines = outline(build_schema(served)), outline(build_schema(composed))
    report = []
    for title, lines in (
        ("only in /graphql (schema.graphql):", served_lines - composed_lines),
        ("only in the composed supergraph's API schema:", composed_lines - served_lines),
    ):
        if lines:
            report.append(title)
            report.extend(f"  {line}" for line in sorted(lines))
    return "\n".join(report)


def test_subgraphs_declare_federation_v2(subgraph_sdls: dict[str, str]) -> None:
    not_v2 = sorted(name for name, sdl in subgraph_sdls.items() if FEDERATION_V2_LINK not in sdl)
    assert not not_v2, f"subgraphs without a Federation v2 @link: {', '.join(not_v2)}"


def test_subgraphs_compose(composition: dict[str, Any]) -> None:
    errors = composition["errors"]
    assert not errors, f"{len(errors)} composition errors:\n{_messages(errors)}"


def test_no_inconsistent_hints(composition: dict[str, Any]) -> None:
    inconsistent = [h for h in composition["hints"] if h["code"].startswith("INCONSISTENT_")]
    assert not inconsistent, (
        f"the subgraphs disagree about shared types:\n{_messages(inconsistent)}"
    )


def test_api_schema_is_the_served_schema(export_dir: Path, composition: dict[str, Any]) -> None:
    errors = _messages(composition["errors"])
    assert composition["apiSchemaSdl"], f"no API schema, composition failed:\n{errors}"
    differences = outline_differences(
        (export_dir / "schema.graphql").read_text(), composition["apiSchemaSdl"]
    )
    assert not differences, f"the router would serve a different API than /graphql:\n{differences}"


def test_node_subgraph_can_return_every_node_type(
    export_dir: Path, subgraph_sdls: dict[str, str]
) -> None:
    """Composition accepts a Node type the `node` subgraph cannot return; `node(id:)` would fail."""
    served = build_schema((export_dir / "schema.graphql").read_text())
    node_interface = served.get_type("Node")
    assert isinstance(node_interface, GraphQLInterfaceType), "/graphql serves Relay's Node"
    node_types = {t.name for t in served.get_implementations(node_interface).objects}
    assert {"Customer", "Invoice", "Payment", "User", "Ticket"} <= node_types
    missing: dict[str, list[str]] = {}
    for name, sdl in subgraph_sdls.items():
        subgraph = build_schema(sdl, assume_valid_sdl=True)
        query = subgraph.query_type
        if query is None or "node" not in query.fields:
            continue
        assert get_named_type(query.fields["node"].type).name == "Node"
        returned = {t.name for t in subgraph.get_possible_types(subgraph.get_type("Node"))}
        if node_types - returned:
            missing[name] = sorted(node_types - returned)
    assert not missing, f"Node types the subgraph serving `node` lacks (as entity stubs): {missing}"


def test_the_support_subgraph_composes_with_its_live_updates(
    subgraph_sdls: dict[str, str], composition: dict[str, Any]
) -> None:
    """Support is a subgraph of its own; its subscriptions reach the API schema a router
    serves, beside the billing ones."""
    assert "support" in subgraph_sdls
    api = build_schema(composition["apiSchemaSdl"])
    subscription = api.subscription_type
    assert subscription is not None
    assert {"ticketUpdated", "ticketMessageAdded", "ticketQueueChanged", "invoiceUpdated"} <= set(
        subscription.fields
    )
    customer = api.get_type("Customer")
    assert isinstance(customer, GraphQLObjectType)
    assert "tickets" in customer.fields
