"""REST routes of identity (the seed's flow 2.1): sign in, refresh, sign out."""

from typing import Literal

from pydantic import AwareDatetime, Field

from domains.clock import utcnow
from domains.errors import Unauthenticated
from domains.identity.credentials import Credentials
from domains.identity.login import MAX_EMAIL_LENGTH, login
from domains.identity.logout import logout
from domains.identity.models import Role
from domains.identity.passwords import MAX_PASSWORD_LENGTH
from domains.identity.refresh import MAX_TOKEN_LENGTH, refresh
from resolvers.relay import to_global_id
from resolvers.rest import Answer, Body, Cookie, RestAnswer, RestCall, RestRoute

# The web portal's refresh token, out of reach of scripts (`__Host-`: this host, path /, TLS).
REFRESH_COOKIE = "__Host-kabinet_refresh"
_NO_STORE = {"Cache-Control": "no-store"}


class LoginRequest(Body):
    email: str = Field(max_length=MAX_EMAIL_LENGTH)
    password: str = Field(max_length=MAX_PASSWORD_LENGTH)
    device: str | None = Field(None, description="names this client in the list of sessions")


class RefreshRequest(Body):
    refresh_token: str | None = Field(
        None,
        max_length=MAX_TOKEN_LENGTH,
        description=f"omit it to use the {REFRESH_COOKIE} cookie, where that is enabled",
    )


class User(Answer):
    id: str
    email: str
    role: Role
    customer_id: str | None


class CredentialsAnswer(Answer):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - a kind of token, no secret
    expires_at: AwareDatetime
    refresh_token: str
    refresh_expires_at: AwareDatetime
    session_id: str
    user: User


def _credentials(call: RestCall, credentials: Credentials) -> RestAnswer:
    user = credentials.user
    cookies = ()
    if call.refresh_cookie:
        max_age = int((credentials.refresh_expires_at - utcnow()).total_seconds())
        cookies = (Cookie(REFRESH_COOKIE, credentials.refresh_token, max_age),)
    body = CredentialsAnswer(
        access_token=credentials.access_token,
        expires_at=credentials.expires_at,
        refresh_token=credentials.refresh_token,
        refresh_expires_at=credentials.refresh_expires_at,
        session_id=credentials.session_id,
        user=User(
            id=to_global_id("User", user.id),
            email=user.email,
            role=user.role,
            customer_id=to_global_id("Customer", credentials.customer_id)
            if credentials.customer_id is not None
            else None,
        ),
    )
    return RestAnswer(body, headers=_NO_STORE, cookies=cookies)


async def auth_login(call: RestCall) -> RestAnswer:
    """Sign in with email and password: an access token and a refresh token."""
    request: LoginRequest = call.body
    context = call.context
    credentials = await login(
        context.auth,
        email=request.email,
        password=request.password,
        client=context.client(request.device),
    )
    return _credentials(call, credentials)


async def auth_refresh(call: RestCall) -> RestAnswer:
    """Trade a refresh token, once, for a new pair: from the body, or else (if enabled)
    from the cookie."""
    token = call.body.refresh_token
    if token is None and call.refresh_cookie:
        token = call.cookies.get(REFRESH_COOKIE)
    if token is None:  # no credential at all, as for a bearer route without its header
        raise Unauthenticated("send 'refresh_token' (or, where enabled, the refresh cookie)")
    return _credentials(call, await refresh(call.context.auth, token=token))


async def auth_logout(call: RestCall) -> RestAnswer:
    """End the session of the bearer's access token."""
    await logout(call.context.auth, call.context.signed_in)
    cookies = (Cookie(REFRESH_COOKIE, None),) if call.refresh_cookie else ()
    return RestAnswer(None, status=204, cookies=cookies)


ROUTES = (
    RestRoute(
        "POST",
        "/auth/login",
        auth_login,
        answers={200: CredentialsAnswer},
        body=LoginRequest,
        signed_in=False,
    ),
    RestRoute(
        "POST",
        "/auth/refresh",
        auth_refresh,
        answers={200: CredentialsAnswer},
        body=RefreshRequest,
        signed_in=False,
        cookie=REFRESH_COOKIE,
    ),
    RestRoute("POST", "/auth/logout", auth_logout, answers={204: None}, errors=("NOT_FOUND",)),
)
