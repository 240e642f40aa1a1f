"""The HTTP client of an acquirer, in the shape of YooKassa's and Stripe's APIs; the local
sandbox acquirer (adapters/sandbox_acquirer.py) speaks it."""

from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx

from domains.billing.errors import ProviderUnavailable
from domains.billing.provider import ProviderPayment


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
