"""Writes every subgraph's SDL and the composed API schema, for routers, IDEs and reviews."""

from pathlib import Path

from graphql import print_schema

from schema.federation import SUBGRAPHS, build_composed, build_subgraph


def composed_sdl() -> str:
    return print_schema(build_composed()._schema) + "\n"


def subgraph_sdl(name: str) -> str:
    return build_subgraph(name).as_str() + "\n"


def export_sdl(directory: Path) -> list[Path]:
    """`directory/schema.graphql` and `directory/subgraphs/<name>.graphql`; returns the paths."""
    subgraphs = directory / "subgraphs"
    subgraphs.mkdir(parents=True, exist_ok=True)
    written = [directory / "schema.graphql"]
    written[0].write_text(composed_sdl())
    for name in SUBGRAPHS:
        path = subgraphs / f"{name}.graphql"
        path.write_text(subgraph_sdl(name))
        written.append(path)
    return written
