"""A customer's own contact details: the only customer fields a customer may change."""

import re

from sqlalchemy import update

from domains.customers.customer import CustomerRow, customers
from domains.database import Database
from domains.errors import Forbidden, InvalidInput
from domains.identity.viewer import Viewer
from domains.reads import row_columns

# E.164: a plus, then up to 15 digits; spaces, dashes and brackets are dropped first.
_PHONE = re.compile(r"^\+[1-9]\d{6,14}$")
_SEPARATORS = re.compile(r"[\s\-()]")
MAX_NAME = 200


async def update_profile(
    db: Database, viewer: Viewer, *, full_name: str | None, phone: str | None
) -> CustomerRow:
    if viewer.customer_id is None:
        raise Forbidden("only customers have a profile to edit")
    changes: dict[str, str | None] = {}
    if full_name is not None:
        name = " ".join(full_name.split())
        if not 1 <= len(name) <= MAX_NAME:
            raise InvalidInput(f"fullName must be 1 to {MAX_NAME} characters")
        changes["full_name"] = name
    if phone is not None:
        number = _SEPARATORS.sub("", phone)
        if number and not _PHONE.match(number):
            raise InvalidInput("phone must be an international number such as +7 495 123-45-67")
        changes["phone"] = number or None
    if not changes:
        raise InvalidInput("nothing to change: give fullName or phone")
    async with db.transaction() as tx:
        updated = await tx.execute(
            update(customers)
            .where(customers.c.id == viewer.customer_id)
            .values(**changes)
            .returning(*row_columns(CustomerRow, customers))
        )
        return CustomerRow(*updated.one())
