"""Who may use a part of the API: the access levels a domain's declarations name."""

from enum import StrEnum

from domains.identity.models import Role


class Access(StrEnum):
    PUBLIC = "public"  # anyone, signed in or not
    SIGNED_IN = "signed_in"  # any role; object-level rules still apply
    CUSTOMER = "customer"  # self-service: a customer's own account
    STAFF = "staff"  # operators and admins
    ADMIN = "admin"


ROLES: dict[Access, frozenset[Role]] = {
    Access.SIGNED_IN: frozenset(Role),
    Access.CUSTOMER: frozenset({Role.CUSTOMER}),
    Access.STAFF: frozenset({Role.OPERATOR, Role.ADMIN}),
    Access.ADMIN: frozenset({Role.ADMIN}),
}


def role_may(access: Access, role: Role | None) -> bool:
    if access is Access.PUBLIC:
        return True
    return role is not None and role in ROLES[access]
