"""The identity subgraph: users, signing in, and global object lookup (`node`)."""

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from domains.identity.models import Role
from domains.identity.user import UserRow
from resolvers import identity as identity_resolvers
from resolvers import node as node_resolvers
from resolvers.relay import pk_of
from schema.shared import Node, is_row, node_id

if TYPE_CHECKING:
    from schema.entities import User

UserRole = strawberry.enum(Role, name="Role", description="What a user may do.")


@strawberry.type
class UserFields:
    """The identity subgraph's part of `User`."""

    id: strawberry.ID = node_id("User")
    email: str
    role: UserRole
    is_active: bool
    created_at: datetime

    is_type_of = is_row(UserRow)

    @classmethod
    async def resolve_reference(cls, info: strawberry.Info, id: strawberry.ID) -> UserRow:
        return await identity_resolvers.user_by_pk(info, pk_of(id, "User"))


@strawberry.type(description="A signed-in session's credentials.")
class LoginPayload:
    access_token: str = strawberry.field(description="Bearer token for the Authorization header.")
    expires_at: datetime
    user: Annotated["User", strawberry.lazy("schema.entities")]


@strawberry.type
class Query:
    me: Annotated["User", strawberry.lazy("schema.entities")] = strawberry.field(
        resolver=identity_resolvers.me, description="The signed-in user."
    )
    node: Node | None = strawberry.field(
        resolver=node_resolvers.node,
        description="Any object by its global id, if the viewer may see it.",
    )


@strawberry.type
class Mutation:
    login: LoginPayload = strawberry.field(
        resolver=identity_resolvers.sign_in, description="Sign in with email and password."
    )
