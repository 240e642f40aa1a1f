"""The analytics service's consumer: one group, `kabinet.analytics`, for all its counters."""

from domains.analytics import invoices, payments
from domains.events.consumer import Handler

CONSUMER_NAME = "analytics"

HANDLERS: dict[str, Handler] = {**payments.HANDLERS, **invoices.HANDLERS}
