"""Admins manage users: role and whether the account may sign in."""

from sqlalchemy import select, update

from domains.errors import Forbidden, InvalidInput, NotFound
from domains.identity.auth import Auth
from domains.identity.models import Role, User
from domains.identity.user import UserRow
from domains.identity.viewer import Viewer
from domains.reads import row_columns


async def update_user(
    auth: Auth,
    actor: Viewer,
    user_id: int,
    *,
    role: Role | None = None,
    is_active: bool | None = None,
) -> UserRow:
    """Changes what a user may do; their sessions end, since tokens carry the old role."""
    if actor.role is not Role.ADMIN:
        raise Forbidden("only admins manage users")
    if role is None and is_active is None:
        raise InvalidInput("nothing to change: give role or isActive")
    if user_id == actor.user_id:
        # An admin demoting or locking out themselves could leave nobody to undo it.
        raise InvalidInput("admins cannot change their own role or access")
    async with auth.db.transaction() as tx:
        current = (
            await tx.execute(select(User.role).where(User.id == user_id).with_for_update())
        ).scalar_one_or_none()
        if current is None:
            raise NotFound("user")
        if role is not None and role is not Role.CUSTOMER and current is Role.CUSTOMER:
            # A customer account owns billing records; staff rights go to separate accounts.
            raise InvalidInput("a customer account cannot become staff; create a staff user")
        if current is not Role.CUSTOMER and role is Role.CUSTOMER:
            raise InvalidInput("a staff account cannot become a customer")
        changes = {
            name: value
            for name, value in (("role", role), ("is_active", is_active))
            if value is not None
        }
        updated = await tx.execute(
            update(User)
            .where(User.id == user_id)
            .values(**changes)
            .returning(*row_columns(UserRow, User.__table__))
        )
        row = UserRow(*updated.one())
        await auth.sessions.revoke(tx, user_id)
    return row
