"""The identity subgraph: users, sessions, signing in and out, passwords, and `node`."""

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.scalars import JSON

from domains.audit.reading import AuditRow
from domains.identity.models import Role
from domains.identity.user import UserRow
from resolvers import audit as audit_resolvers
from resolvers import identity as identity_resolvers
from resolvers import node as node_resolvers
from resolvers.relay import pk_of
from resolvers.rest import identity as identity_rest
from schema.access import Access
from schema.plugin import Domain
from schema.shared import Connection, Node, is_row, node_id

if TYPE_CHECKING:
    from schema.entities import User

UserRole = strawberry.enum(Role, name="Role", description="What a user may do.")


@strawberry.type(description="A person who signs in.")
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


@strawberry.type(description="A session's credentials: from login, or from refreshToken.")
class LoginPayload:
    access_token: str = strawberry.field(description="Bearer token for the Authorization header.")
    expires_at: datetime = strawberry.field(description="When the access token expires.")
    refresh_token: str = strawberry.field(
        description="Single use: trade it with refreshToken for new credentials before it expires."
    )
    refresh_expires_at: datetime = strawberry.field(
        description="When the refresh token expires unless traded first."
    )
    session_id: strawberry.ID = strawberry.field(description="The session these belong to.")
    user: Annotated["User", strawberry.lazy("schema.entities")]


@strawberry.type(description="One signed-in device or browser of the viewer.")
class Session:
    id: strawberry.ID
    device_info: str = strawberry.field(description="The client's device name and User-Agent.")
    ip_address: str | None = strawberry.field(description="Where it signed in from.")
    created_at: datetime
    last_seen_at: datetime = strawberry.field(description="Last use, to about a minute.")
    expires_at: datetime = strawberry.field(description="When it ends even if kept in use.")
    current: bool = strawberry.field(description="Whether this request came through it.")


@strawberry.type(description="One staff mutation, as the audit log keeps it for good.")
class AuditEntry:
    recorded_at: datetime
    actor: Annotated["User", strawberry.lazy("schema.entities")] = strawberry.field(
        resolver=audit_resolvers.entry_actor, description="The staff member who acted."
    )
    actor_role: str = strawberry.field(description="Their role then: OPERATOR or ADMIN.")
    session_id: strawberry.ID | None = strawberry.field(description="The session it came in.")
    client_address: str | None = strawberry.field(description="The client's address.")
    user_agent: str | None
    operation: str = strawberry.field(
        description='"Mutation.<field>" or a REST route, "POST /billing/pay".'
    )
    arguments: JSON = strawberry.field(
        resolver=audit_resolvers.entry_arguments, description="Its arguments, secrets redacted."
    )
    outcome: str = strawberry.field(description="OK, or REFUSED (nothing of it was kept).")
    error_code: str | None = strawberry.field(description="The code a refusal answered.")
    customer_id: strawberry.ID | None = strawberry.field(
        resolver=audit_resolvers.entry_customer_id,
        description="The customer whose objects it changed, if any.",
    )
    changes: JSON = strawberry.field(
        resolver=audit_resolvers.entry_changes,
        description='The rows it changed: [{table, op, before, after}] ("before" null for '
        'an insert, "after" null for a delete).',
    )

    is_type_of = is_row(AuditRow)


@strawberry.type
class Query:
    me: Annotated["User", strawberry.lazy("schema.entities")] = strawberry.field(
        resolver=identity_resolvers.me, description="The signed-in user."
    )
    my_sessions: list[Session] = strawberry.field(
        resolver=identity_resolvers.my_sessions,
        description="The viewer's live sessions, newest first.",
    )
    users: Connection[Annotated["User", strawberry.lazy("schema.entities")]] = strawberry.field(
        resolver=identity_resolvers.users,
        description="Staff list users, oldest first: of any of `role`, active or not, by the "
        "start of their email.",
    )
    audit_log: Connection[AuditEntry] = strawberry.field(
        resolver=audit_resolvers.audit_log,
        description="Admins: every staff mutation, newest first, filtered by actor, "
        "operation (exact), customer and time (since inclusive, until exclusive).",
    )
    node: Node | None = strawberry.field(
        resolver=node_resolvers.node,
        description="Any object by its global id, if the viewer may see it.",
    )


@strawberry.type
class Mutation:
    login: LoginPayload = strawberry.field(
        resolver=identity_resolvers.login,
        description="Sign in with email and password; `device` names this client in mySessions.",
    )
    refresh_token: LoginPayload = strawberry.field(
        resolver=identity_resolvers.refresh_token,
        description="Trade a refresh token for new credentials; each works once.",
    )
    logout: bool = strawberry.field(
        resolver=identity_resolvers.logout, description="End the current session."
    )
    logout_everywhere: int = strawberry.field(
        resolver=identity_resolvers.logout_everywhere,
        description="End every session of the viewer, this one included; how many ended.",
    )
    revoke_session: bool = strawberry.field(
        resolver=identity_resolvers.revoke_session,
        description="End one of the viewer's sessions (from mySessions).",
    )
    change_password: bool = strawberry.field(
        resolver=identity_resolvers.change_password,
        description="Set a new password; ends every other session of the viewer.",
    )
    request_password_reset: bool = strawberry.field(
        resolver=identity_resolvers.request_password_reset,
        description="Email a password-reset link if the address has an account; always true.",
    )
    reset_password: bool = strawberry.field(
        resolver=identity_resolvers.reset_password,
        description="Set a new password with the token from the reset email; ends every session.",
    )
    update_user: Annotated["User", strawberry.lazy("schema.entities")] = strawberry.field(
        resolver=identity_resolvers.update_user,
        description="Change a user's role or access (admins); their sessions end.",
    )


domain = Domain(
    name="identity",
    query=Query,
    mutation=Mutation,
    entity_parts={"User": UserFields},
    access={
        "Query.me": Access.SIGNED_IN,
        "Query.node": Access.SIGNED_IN,
        "Query.mySessions": Access.SIGNED_IN,
        "Query.users": Access.STAFF,
        "UserConnection": Access.STAFF,
        "UserEdge": Access.STAFF,
        "Query.auditLog": Access.ADMIN,
        "AuditEntry": Access.ADMIN,
        "AuditEntryConnection": Access.ADMIN,
        "AuditEntryEdge": Access.ADMIN,
        "Mutation.login": Access.PUBLIC,
        "Mutation.refreshToken": Access.PUBLIC,
        "Mutation.requestPasswordReset": Access.PUBLIC,
        "Mutation.resetPassword": Access.PUBLIC,
        "Mutation.logout": Access.SIGNED_IN,
        "Mutation.logoutEverywhere": Access.SIGNED_IN,
        "Mutation.revokeSession": Access.SIGNED_IN,
        "Mutation.changePassword": Access.SIGNED_IN,
        "Mutation.updateUser": Access.ADMIN,
        # Every path to a user checks the viewer (me, node, Customer.user), or is the login
        # that just proved who it is (LoginPayload.user).
        "User": Access.PUBLIC,
        "LoginPayload": Access.PUBLIC,
        "Session": Access.SIGNED_IN,
    },
    rest=identity_rest.ROUTES,
    # audit.recorded: a staff mutation recorded (domains/audit/log.py).
    events=("identity", "audit"),
)
