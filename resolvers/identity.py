"""Identity resolvers: the viewer, users, signing in and out, sessions and passwords."""

from typing import Any

import strawberry
from strawberry import Info

from dataloaders.identity import UsersByIdLoader
from domains.errors import Forbidden, NotFound
from domains.identity import login as sign_in
from domains.identity import logout as sign_out
from domains.identity import password_change, password_reset, refresh, user_admin
from domains.identity.credentials import Credentials
from domains.identity.models import Role
from domains.identity.session import SessionRow
from domains.identity.user import USER_ORDER, UserFilter, UserRow, list_users
from resolvers.context import Context
from resolvers.relay import Connection, connection_from_page, pk_of, window_from_arguments


def visible_user(user: UserRow | None, _parent: Any, context: Context) -> UserRow:
    """Users see themselves; staff see everyone (a lookup's `then`)."""
    viewer = context.signed_in
    if user is None or (user.id != viewer.user_id and not viewer.is_staff):
        raise NotFound("user")
    return user


async def user_by_pk(info: Info[Context], pk: int) -> UserRow:
    user = await info.context.loaders.of(UsersByIdLoader).load(pk)
    return visible_user(user, None, info.context)


async def me(info: Info[Context]) -> UserRow:
    return await user_by_pk(info, info.context.signed_in.user_id)


async def login(
    info: Info[Context], email: str, password: str, device: str | None = None
) -> Credentials:
    context = info.context
    return await sign_in.login(
        context.auth, email=email, password=password, client=context.client(device)
    )


async def refresh_token(info: Info[Context], token: str) -> Credentials:
    return await refresh.refresh(info.context.auth, token=token)


async def my_sessions(info: Info[Context]) -> list[SessionRow]:
    viewer = info.context.signed_in
    return await info.context.auth.sessions.of_user(viewer.user_id, viewer.session_id)


async def revoke_session(info: Info[Context], id: strawberry.ID) -> bool:
    await sign_out.end_session(info.context.auth, info.context.signed_in, id)
    return True


async def logout(info: Info[Context]) -> bool:
    await sign_out.logout(info.context.auth, info.context.signed_in)
    return True


async def logout_everywhere(info: Info[Context]) -> int:
    return await sign_out.logout_everywhere(info.context.auth, info.context.signed_in)


async def change_password(info: Info[Context], current_password: str, new_password: str) -> bool:
    context = info.context
    await password_change.change_password(
        context.auth,
        context.signed_in,
        current_password=current_password,
        new_password=new_password,
        client=context.client(),
    )
    return True


async def request_password_reset(info: Info[Context], email: str) -> bool:
    context = info.context
    await password_reset.request_password_reset(context.auth, email=email, client=context.client())
    return True


async def reset_password(info: Info[Context], token: str, new_password: str) -> bool:
    await password_reset.reset_password(info.context.auth, token=token, new_password=new_password)
    return True


async def update_user(
    info: Info[Context],
    id: strawberry.ID,
    role: Role | None = None,
    is_active: bool | None = None,
) -> UserRow:
    return await user_admin.update_user(
        info.context.auth,
        info.context.signed_in,
        pk_of(id, "User"),
        role=role,
        is_active=is_active,
    )


async def users(
    info: Info[Context],
    role: list[Role] | None = None,
    is_active: bool | None = None,
    email_prefix: str | None = None,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
) -> Connection[UserRow]:
    if not info.context.signed_in.is_staff:
        raise Forbidden("only staff can list users")
    window = window_from_arguments(USER_ORDER, first, after, last, before)
    listed = UserFilter(frozenset(role or ()), is_active, (email_prefix or "").strip() or None)
    async with info.context.db.read() as reader:
        page = await list_users(reader, listed, window)
    return connection_from_page(page, USER_ORDER)
