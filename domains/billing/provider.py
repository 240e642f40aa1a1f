"""Payment providers (acquirers): how card money reaches us.

A payment starts with `create_payment`: the provider answers with its own payment id, a
status (`pending` until the payer confirms) and the URL where the payer confirms it (the
card form, 3-D Secure). The result arrives later, asynchronously, as a signed webhook
(`POST /webhooks/payments/<provider>`, see `domains.billing.webhook`), never from the
payer's browser. `idempotency_key` makes a retried create return the first payment.
`get_payment` asks for a payment's current state, for when a webhook never came (the
sweep of stale pending payments, `domains.billing.sweep`); `cancel_payment` ends a pending
one there, so the payer can no longer pay what we are about to fail. A payment that
succeeded meanwhile cannot be canceled: the answer is then that payment, succeeded.

`SandboxProvider` speaks to the local sandbox acquirer (`domains.billing.sandbox_provider`)
over HTTP, in the shape of YooKassa's and Stripe's APIs.
"""

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from domains.billing.errors import ProviderUnavailable


@dataclass(frozen=True, slots=True)
class ProviderPayment:
    provider_payment_id: str
    status: str
    confirmation_url: str
    amount: Decimal
    currency: str


class PaymentProvider(Protocol):
    name: str

    async def get_payment(self, provider_payment_id: str) -> ProviderPayment: ...

    async def cancel_payment(self, provider_payment_id: str) -> ProviderPayment: ...

    async def create_payment(
        self,
        *,
        amount: Decimal,
        currency: str,
        idempotency_key: str,
        description: str,
        return_url: str,
    ) -> ProviderPayment: ...


class SandboxProvider:
    """`POST {base_url}/v1/payments` with an `Idempotence-Key` header; `GET .../{id}`;
    `POST .../{id}/cancel`."""

    name = "sandbox"

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    async def create_payment(
        self,
        *,
        amount: Decimal,
        currency: str,
        idempotency_key: str,
        description: str,
        return_url: str,
    ) -> ProviderPayment:
        body = {
            "amount": {"value": str(amount), "currency": currency},
            "description": description,
            "confirmation": {"type": "redirect", "return_url": return_url},
        }
        return await self._call(
            "POST", "/v1/payments", json=body, headers={"Idempotence-Key": idempotency_key}
        )

    async def get_payment(self, provider_payment_id: str) -> ProviderPayment:
        return await self._call("GET", f"/v1/payments/{quote(provider_payment_id, safe='')}")

    async def cancel_payment(self, provider_payment_id: str) -> ProviderPayment:
        """The refusal (409) to cancel a payment that succeeded carries that payment."""
        path = f"/v1/payments/{quote(provider_payment_id, safe='')}/cancel"
        return await self._call("POST", path, refusal_carries_payment=True)

    async def _call(
        self, method: str, path: str, *, refusal_carries_payment: bool = False, **request: Any
    ) -> ProviderPayment:
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.request(method, f"{self.base_url}{path}", **request)
            if refusal_carries_payment and response.status_code == httpx.codes.CONFLICT:
                data = response.json()["payment"]
            else:
                response.raise_for_status()
                data = response.json()
            return ProviderPayment(
                provider_payment_id=str(data["id"]),
                status=str(data["status"]),
                confirmation_url=str(data["confirmation_url"]),
                amount=Decimal(str(data["amount"]["value"])),
                currency=str(data["amount"]["currency"]),
            )
        except (httpx.HTTPError, ValueError, KeyError, TypeError, ArithmeticError) as error:
            raise ProviderUnavailable(
                "the payment provider is unavailable; try again shortly"
            ) from error
