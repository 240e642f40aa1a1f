"""Schemathesis runs every operation of GET /openapi.json with generated inputs, valid and
not, against the real app on PostgreSQL, and checks each answer: no 5xx, status, headers
and body as the document says, invalid input refused, valid input not refused as
malformed, and a declared credential really required.

A customer's bearer token goes with every call (sign-out gets a fresh session each
time); webhook calls are signed with the provider's secret over the exact bytes sent, so
the fuzzer reaches the settlement behind the signature check.
"""

import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
import requests
import schemathesis
from hypothesis import reject
from schemathesis.config import SchemathesisConfig
from schemathesis.core.parameters import ParameterLocation

from adapters.sandbox_acquirer import create_sandbox_app
from domains.billing.webhook import signature
from domains.notifications.sms_report import report_signature
from gateway.rest import rest_document
from schema.domains import DOMAINS
from tests.conftest import DEMO_PASSWORD
from tests.fuzzing import FUZZ, demo_database, demo_server
from tests.servers import free_socket, serve, url_of

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SECRET = b"whsec-fuzz-0123456789"
SMS_SECRET = b"sms-report-fuzz-secret"
SIGN = "sign-me"  # a placeholder the signer below replaces with the real signature


class SignWebhook(requests.auth.AuthBase):
    """Signs a request that asks for it, over the body exactly as it is sent; a probe the
    checks send without the header stays unsigned."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        raw = body.encode() if isinstance(body, str) else body
        if request.headers.get("Webhook-Signature") == SIGN:
            timestamp = request.headers["Webhook-Timestamp"]
            request.headers["Webhook-Signature"] = signature(SECRET, timestamp, raw)
        if request.headers.get("X-Signature") == SIGN:
            timestamp = request.headers["X-Signature-Timestamp"]
            request.headers["X-Signature"] = report_signature(SMS_SECRET, timestamp, raw)
        return request


@pytest_asyncio.fixture(scope="module")
async def fuzz_db() -> AsyncIterator[str]:
    async with demo_database("kabinet_fuzz_rest") as url:
        yield url


@pytest.fixture(scope="module")
def base_url(fuzz_db: str, signing_key: bytes) -> Iterator[str]:
    app_socket, sandbox_socket = free_socket(), free_socket()
    sandbox = create_sandbox_app(f"{url_of(app_socket)}/webhooks/payments/sandbox", SECRET)
    with (
        serve(sandbox, sandbox_socket) as sandbox_url,
        demo_server(
            fuzz_db,
            signing_key,
            sock=app_socket,
            payment_provider_url=sandbox_url,
            payment_webhook_secret=SECRET.decode(),
            sms_report_secret=SMS_SECRET.decode(),
            payment_return_url="https://kabinet.example/billing",
        ) as url,
    ):
        yield url


def sign_in(base: str, email: str = "alice@example.com") -> str:
    response = httpx.post(f"{base}/auth/login", json={"email": email, "password": DEMO_PASSWORD})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


@pytest.fixture(scope="module")
def token(base_url: str) -> str:
    return sign_in(base_url)


# The document GET /openapi.json serves (tests/test_openapi.py holds them equal), loaded at
# collection so each operation is a test of its own.
schema = schemathesis.openapi.from_dict(
    rest_document(DOMAINS),
    config=SchemathesisConfig.from_dict(
        {
            "checks": {
                # Valid by the schema yet refused: 422 is a billing rule (an amount of "0"),
                # and 400 what a schema cannot say (an id's or a cursor's inner form, a
                # notification about no payment of ours).
                "positive_data_acceptance": {
                    "expected-statuses": ["2xx", "400", "401", "403", "404", "409", "422"]
                },
            }
        }
    ),
)


@schema.parametrize()
@FUZZ
def test_every_operation_keeps_its_contract(case, base_url: str, token: str) -> None:
    # A query parameter whose value is None or an empty list is not sent at all: a case
    # whose violation is such a parameter reaches the server valid, and is no finding.
    if _negative(case, ParameterLocation.QUERY) and any(
        value is None or value == [] or value == {} for value in (case.query or {}).values()
    ):
        reject()
    headers = {}
    if "bearer" in _schemes(case):
        # Signing out ends the session: that call gets one of its own.
        fresh = case.operation.path == "/auth/logout"
        headers["Authorization"] = f"Bearer {sign_in(base_url) if fresh else token}"
    if "webhookSignature" in _schemes(case) and not _negative(case, ParameterLocation.HEADER):
        headers |= {"Webhook-Signature": SIGN, "Webhook-Timestamp": str(int(time.time()))}
        if not _negative(case, ParameterLocation.PATH):
            case.path_parameters["provider"] = "sandbox"  # the one provider configured
    if "smsReportSignature" in _schemes(case) and not _negative(case, ParameterLocation.HEADER):
        headers |= {"X-Signature": SIGN, "X-Signature-Timestamp": str(int(time.time()))}
        if not _negative(case, ParameterLocation.PATH):
            case.path_parameters["provider"] = "smsc"  # the SMS gateway configured
    if case.method == "POST" and "requestBody" not in case.operation.definition.raw:
        # A bodiless POST without Authorization could be a forged cross-site one, refused
        # (400 CSRF_REJECTED) before the route's 401: say it is not, as scripts do, so the
        # probes without the token meet the route's own refusal.
        headers["X-Requested-With"] = "schemathesis"
    case.call_and_validate(base_url=base_url, headers=headers, auth=SignWebhook())


def _negative(case, location: ParameterLocation) -> bool:
    return case.meta is not None and case.meta.is_negative_at(location)


def _schemes(case) -> set[str]:
    return {name for scheme in case.operation.definition.raw.get("security", []) for name in scheme}
