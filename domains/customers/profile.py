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


def valid_name(full_name: str) -> str:
    name = " ".join(full_name.split())
    if not 1 <= len(name) <= MAX_NAME:
        raise InvalidInput(f"fullName must be 1 to {MAX_NAME} characters")
    return name


def valid_phone(phone: str) -> str | None:
    """The number in E.164, or None for an empty one (no phone)."""
    number = _SEPARATORS.sub("", phone)
    if number and not _PHONE.match(number):
        raise InvalidInput("phone must be an international number such as +7 495 123-45-67")
    return number or None


async def update_profile(
    db: Database, viewer: Viewer, *, full_name: str | None, phone: str | None
) -> CustomerRow:
    if viewer.customer_id is None:
        raise Forbidden("only customers have a profile to edit")
    changes: dict[str, str | None] = {}
    if full_name is not None:
        changes["full_name"] = valid_name(full_name)
    if phone is not None:
        changes["phone"] = valid_phone(phone)
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
