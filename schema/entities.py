"""Entities several domains contribute fields to, each assembled once from its parts.

A domain names its part of an entity in `Domain.entity_parts`; the first part (in the
order of schema/domains.py) is the owner's, which carries the key and the description.
Other modules refer to these types lazily (`strawberry.lazy("schema.entities")`), which
looks them up in this module's namespace: each assembled entity is set there by name.
"""

import strawberry

from schema.domains import DOMAINS
from schema.shared import Node


def _assemble(name: str, parts: list[type]) -> type:
    description = parts[0].__strawberry_definition__.description
    return strawberry.federation.type(keys=["id"], description=description)(
        type(name, (*parts, Node), {})
    )


def _parts() -> dict[str, list[type]]:
    found: dict[str, list[type]] = {}
    for domain in DOMAINS:
        for name, part in domain.entity_parts.items():
            found.setdefault(name, []).append(part)
    return found


ENTITIES: dict[str, type] = {name: _assemble(name, parts) for name, parts in _parts().items()}

globals().update(ENTITIES)
