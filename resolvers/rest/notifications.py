"""REST routes of notifications: the mobile app registers its push token and removes it."""

from typing import Literal

from pydantic import AwareDatetime, Field

from domains.notifications import device as devices
from domains.notifications.channel import PushPlatform
from domains.notifications.device import MAX_APP_ID_LENGTH, MAX_LOCALE_LENGTH, MAX_TOKEN_LENGTH
from resolvers.relay import pk_of, to_global_id
from resolvers.rest import Answer, Body, RestAnswer, RestCall, RestRoute


class DeviceRequest(Body):
    platform: Literal["android", "ios"] = Field(description="android: FCM; ios: APNs")
    token: str = Field(min_length=1, max_length=MAX_TOKEN_LENGTH)
    app_id: str = Field(min_length=1, max_length=MAX_APP_ID_LENGTH, examples=["ru.kabinet.app"])
    locale: str = Field(min_length=1, max_length=MAX_LOCALE_LENGTH, examples=["ru"])


class DeviceAnswer(Answer):
    id: str
    platform: Literal["android", "ios"]
    app_id: str
    locale: str
    registered_at: AwareDatetime


async def register_device(call: RestCall) -> RestAnswer:
    """Registers the caller's push token (a token another account had moves to this one)."""
    await call.charge("mutation", 1)
    body: DeviceRequest = call.body
    context = call.context
    row = await devices.register_device(
        context.db,
        context.signed_in.user_id,
        platform=PushPlatform(body.platform),
        token=body.token,
        app_id=body.app_id,
        locale=body.locale,
        now=context.auth.clock.now(),
    )
    return RestAnswer(
        DeviceAnswer(
            id=to_global_id("PushDevice", row.id),
            platform=row.platform.value,
            app_id=row.app_id,
            locale=row.locale,
            registered_at=row.registered_at,
        ),
        status=201,
    )


async def unregister_device(call: RestCall) -> RestAnswer:
    """Removes one of the caller's devices; another's is not found."""
    await call.charge("mutation", 1)
    context = call.context
    await devices.unregister_device(
        context.db, context.signed_in.user_id, pk_of(call.path["id"], "PushDevice")
    )
    return RestAnswer(None, status=204)


ROUTES = (
    RestRoute(
        "POST",
        "/notifications/devices",
        register_device,
        answers={201: DeviceAnswer},
        body=DeviceRequest,
    ),
    RestRoute(
        "DELETE",
        "/notifications/devices/{id}",
        unregister_device,
        answers={204: None},
        errors=("BAD_USER_INPUT", "NOT_FOUND"),  # a malformed id; another's or none
    ),
)
