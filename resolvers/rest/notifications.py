"""REST routes of notifications: the mobile app registers its push token and removes it;
the SMS gateways report on what they delivered."""

from typing import Literal

from pydantic import AwareDatetime, Field

from domains.clock import utcnow
from domains.errors import NotFound
from domains.notifications import device as devices
from domains.notifications.channel import PushPlatform
from domains.notifications.delivery_report import record_delivery_report
from domains.notifications.device import MAX_APP_ID_LENGTH, MAX_LOCALE_LENGTH, MAX_TOKEN_LENGTH
from domains.notifications.sms_report import read_report
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


class DeliveryReportForm(Body):
    """An SMS gateway's report on a message (SMSC's callback form)."""

    id: str = Field(description="the gateway's message id")
    phone: str
    status: str = Field(description="1 delivered; 3, 20, 22-25 failed; others on the way")
    time: str = Field(description="Unix seconds")
    err: str = "0"


class ReportAnswer(Answer):
    status: Literal["ok", "pending", "unknown"] = Field(
        description="ok: recorded; pending: still on its way; unknown: no sent message has it"
    )


async def sms_delivery_report(call: RestCall) -> RestAnswer:
    """An SMS gateway reports on a message, authenticated by the signature alone:
    HMAC-SHA256 over `<X-Signature-Timestamp>.<body>` with the provider's report secret,
    the timestamp within the tolerance; otherwise 401 and nothing changes. A report
    recorded, repeated or about no message of ours answers 200, so the gateway stops."""
    reports = call.context.delivery_reports
    provider = call.path["provider"]
    secret = reports.secrets.get(provider) if reports is not None else None
    if reports is None or secret is None:
        raise NotFound("SMS provider")
    report = read_report(
        provider=provider,
        secret=secret,
        timestamp=call.headers.get("x-signature-timestamp", ""),
        signature=call.headers.get("x-signature", ""),
        body=call.raw_body,
        now=utcnow(),
        tolerance=reports.tolerance,
    )
    if report is None:
        return RestAnswer(ReportAnswer(status="pending"))
    recorded = await record_delivery_report(call.context.db, report)
    return RestAnswer(ReportAnswer(status="ok" if recorded else "unknown"))


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
    RestRoute(
        "POST",
        "/webhooks/sms/{provider}",
        sms_delivery_report,
        answers={200: ReportAnswer},
        body=DeliveryReportForm,
        signed_body=True,
        body_type="application/x-www-form-urlencoded",
        signature="smsReportSignature",
        signed_in=False,
        errors=("BAD_USER_INPUT", "NOT_FOUND"),
    ),
)
