"""Identity resolvers: the viewer, users, and signing in."""

from strawberry import Info

from domains.errors import NotFound
from domains.identity.login import LoginResult, login
from domains.identity.user import UserRow
from resolvers.context import Context


async def user_by_pk(info: Info[Context], pk: int) -> UserRow:
    """Users see themselves; staff see everyone."""
    viewer = info.context.signed_in
    if pk != viewer.user_id and not viewer.is_staff:
        raise NotFound("user")
    user = await info.context.loaders.users_by_id.load(pk)
    if user is None:
        raise NotFound("user")
    return user


async def me(info: Info[Context]) -> UserRow:
    return await user_by_pk(info, info.context.signed_in.user_id)


async def sign_in(info: Info[Context], email: str, password: str) -> LoginResult:
    return await login(info.context.db, info.context.tokens, email=email, password=password)
