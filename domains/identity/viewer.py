"""Who is asking: the authenticated principal every read and action is checked against."""

import uuid
from dataclasses import dataclass

from domains.errors import NotFound, Unauthenticated
from domains.identity.models import Role


@dataclass(frozen=True, slots=True)
class Viewer:
    user_id: int
    role: Role
    # The customer account a customer-role user owns; None for staff.
    customer_id: int | None = None
    # The session the access token belongs to (logout ends it).
    session_id: uuid.UUID | None = None

    @property
    def is_staff(self) -> bool:
        return self.role in (Role.OPERATOR, Role.ADMIN)

    def may_read_customer(self, customer_id: int) -> bool:
        return self.is_staff or self.customer_id == customer_id

    def check_customer(self, customer_id: int, resource: str) -> None:
        """Another customer's object reads as missing, so its existence does not leak."""
        if not self.may_read_customer(customer_id):
            raise NotFound(resource)


def require_viewer(viewer: Viewer | None) -> Viewer:
    if viewer is None:
        raise Unauthenticated("sign in first: send an access token as 'Authorization: Bearer'")
    return viewer
