"""REST routes of identity (the seed's flow 2.1): sign in, refresh, sign out."""

from domains.clock import utcnow
from domains.errors import InvalidInput
from domains.identity.credentials import Credentials
from domains.identity.login import login
from domains.identity.logout import logout
from domains.identity.refresh import refresh
from resolvers.relay import to_global_id
from resolvers.rest import Cookie, RestAnswer, RestCall, RestRoute

# The web portal's refresh token, out of reach of scripts (`__Host-`: this host, path /, TLS).
REFRESH_COOKIE = "__Host-kabinet_refresh"
_NO_STORE = {"Cache-Control": "no-store"}


def _credentials(call: RestCall, credentials: Credentials) -> RestAnswer:
    user = credentials.user
    cookies = ()
    if call.refresh_cookie:
        max_age = int((credentials.refresh_expires_at - utcnow()).total_seconds())
        cookies = (Cookie(REFRESH_COOKIE, credentials.refresh_token, max_age),)
    body = {
        "access_token": credentials.access_token,
        "token_type": "Bearer",
        "expires_at": credentials.expires_at.isoformat(),
        "refresh_token": credentials.refresh_token,
        "refresh_expires_at": credentials.refresh_expires_at.isoformat(),
        "session_id": credentials.session_id,
        "user": {
            "id": to_global_id("User", user.id),
            "email": user.email,
            "role": user.role.value,
            "customer_id": to_global_id("Customer", credentials.customer_id)
            if credentials.customer_id is not None
            else None,
        },
    }
    return RestAnswer(body, headers=_NO_STORE, cookies=cookies)


async def auth_login(call: RestCall) -> RestAnswer:
    email, password = call.body.get("email"), call.body.get("password")
    if not isinstance(email, str) or not isinstance(password, str):
        raise InvalidInput("'email' and 'password' are required strings")
    device = call.body.get("device")
    if device is not None and not isinstance(device, str):
        raise InvalidInput("'device' must be a string")
    context = call.context
    credentials = await login(
        context.auth, email=email, password=password, client=context.client(device)
    )
    return _credentials(call, credentials)


async def auth_refresh(call: RestCall) -> RestAnswer:
    """The refresh token from the body, or else (if enabled) from the cookie."""
    token = call.body.get("refresh_token")
    if token is None and call.refresh_cookie:
        token = call.cookies.get(REFRESH_COOKIE)
    if not isinstance(token, str):
        raise InvalidInput("'refresh_token' is a required string")
    return _credentials(call, await refresh(call.context.auth, token=token))


async def auth_logout(call: RestCall) -> RestAnswer:
    """Ends the session of the bearer's access token."""
    await logout(call.context.auth, call.context.signed_in)
    cookies = (Cookie(REFRESH_COOKIE, None),) if call.refresh_cookie else ()
    return RestAnswer(None, status=204, cookies=cookies)


ROUTES = (
    RestRoute("POST", "/auth/login", auth_login, signed_in=False),
    RestRoute("POST", "/auth/refresh", auth_refresh, signed_in=False),
    RestRoute("POST", "/auth/logout", auth_logout, json_body=False),
)
