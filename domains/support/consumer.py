"""The support service's consumers: `support` reacts to billing's payments on the customer's
tickets (domains/support/payments.py); `support_monitoring` counts ticket events into the
worker's metrics (domains/support/monitoring.py, wired by the worker)."""

from domains.events.consumer import Handler
from domains.support import payments

CONSUMER_NAME = "support"

HANDLERS: dict[str, Handler] = {**payments.HANDLERS}
