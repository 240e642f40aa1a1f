"""Staff provision a subscriber (admins): the customer account with its user, invited.

The user signs in with the email given (stored lower-cased, unique) once they have set a
password through the invitation's link (domains/identity/invitation.py); until then the
account's password is one nobody knows. The customer's segment is not theirs but their
tariffs'. The account, its user and the invitation are one unit of work: a refusal leaves
nothing written.
"""

import re

from sqlalchemy.dialects import postgresql

from domains.customers.customer import CustomerRow, customers
from domains.customers.errors import ContractNumTaken, EmailTaken
from domains.customers.profile import valid_name, valid_phone
from domains.errors import Forbidden, InvalidInput
from domains.identity.auth import Auth
from domains.identity.invitation import invite, unknown_password_hash
from domains.identity.login import MAX_EMAIL_LENGTH
from domains.identity.models import Role, User
from domains.identity.user import normalize_email
from domains.identity.viewer import Viewer
from domains.reads import row_columns

users = User.__table__

# One @, no spaces, a dot in the domain: the mailbox itself is proved by the invitation.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CONTRACT_NUM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-/]{0,31}$")


def _valid_email(email: str) -> str:
    address = normalize_email(email)
    if len(address) > MAX_EMAIL_LENGTH or not _EMAIL.match(address):
        raise InvalidInput("email must be an address such as name@example.ru")
    return address


async def create_customer(
    auth: Auth,
    viewer: Viewer,
    *,
    email: str,
    full_name: str,
    contract_num: str,
    phone: str | None = None,
) -> CustomerRow:
    if viewer.role is not Role.ADMIN:
        raise Forbidden("only admins create customers")
    address = _valid_email(email)
    name = valid_name(full_name)
    number = contract_num.strip()
    if not _CONTRACT_NUM.match(number):
        raise InvalidInput("contractNum is 1 to 32 letters, digits, dashes or slashes")
    phone_number = valid_phone(phone) if phone is not None else None
    password_hash = await unknown_password_hash()
    async with auth.db.transaction() as tx:
        # ON CONFLICT rather than a look first: two admins creating the same email at
        # once get one account and one EMAIL_TAKEN, never a unique-index error.
        user_id = (
            await tx.execute(
                postgresql.insert(users)
                .values(
                    email=address,
                    role=Role.CUSTOMER,
                    is_active=True,
                    password_hash=password_hash,
                    created_at=auth.clock.now(),
                )
                .on_conflict_do_nothing(index_elements=[users.c.email])
                .returning(users.c.id)
            )
        ).scalar_one_or_none()
        if user_id is None:
            raise EmailTaken(f"an account with email {address} exists")
        made = (
            await tx.execute(
                postgresql.insert(customers)
                .values(
                    user_id=user_id,
                    contract_num=number,
                    full_name=name,
                    phone=phone_number,
                    created_at=auth.clock.now(),
                )
                .on_conflict_do_nothing(index_elements=[customers.c.contract_num])
                .returning(*row_columns(CustomerRow, customers))
            )
        ).one_or_none()
        if made is None:
            raise ContractNumTaken(f"contract number {number} is taken")
        await invite(tx, auth, user_id=user_id, email=address, full_name=name)
    return CustomerRow(*made)
