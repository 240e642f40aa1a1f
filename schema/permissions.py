"""Who may use each part of the API, as the domains declare it (`Domain.access`).

Deny by default: a field no declaration covers cannot be queried by anyone, and
tests/test_permissions.py fails for it. Root fields are declared one by one; other types
whole, or single fields of them by coordinate. Object-level rules, such as "a customer
sees only their own invoices", live in the domain and apply on every path.
"""

from collections.abc import Iterable

from schema.access import Access, role_may
from schema.domains import DOMAINS
from schema.plugin import Domain

__all__ = ["DECLARED", "Access", "access_for", "role_may"]

# What belongs to no domain: the shared types, and federation's own fields.
_SHARED: dict[str, Access] = {
    "Node": Access.SIGNED_IN,
    "Money": Access.PUBLIC,
    "PageInfo": Access.PUBLIC,
    "_Service": Access.PUBLIC,
    # A router fetches SDL and entities; entity resolvers apply the object rules.
    "Query._service": Access.PUBLIC,
    "Query._entities": Access.PUBLIC,
}


def declared(domains: Iterable[Domain]) -> dict[str, Access]:
    """The domains' declarations in one table; one coordinate declared twice is refused, as
    two domains could otherwise disagree silently about who may use it."""
    table = dict(_SHARED)
    for domain in domains:
        twice = table.keys() & domain.access.keys()
        if twice:
            raise ValueError(f"{domain.name} declares access already declared: {sorted(twice)}")
        table.update(domain.access)
    return table


DECLARED: dict[str, Access] = declared(DOMAINS)


def access_for(type_name: str, field_name: str) -> Access | None:
    """The declared access of `Type.field`, or None when nothing declares it (denied)."""
    return DECLARED.get(f"{type_name}.{field_name}") or DECLARED.get(type_name)
