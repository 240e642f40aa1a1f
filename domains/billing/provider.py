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

Each call raises `ProviderUnavailable` when the provider cannot be reached or its answer
cannot be read. The HTTP client of an acquirer is an adapter (adapters/acquirer_client.py).
"""

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol


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
