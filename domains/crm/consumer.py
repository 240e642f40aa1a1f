"""The CRM service's consumer: one group, `kabinet.crm`, writing every customer's timeline."""

from domains.crm import billing
from domains.events.consumer import Handler

CONSUMER_NAME = "crm"

HANDLERS: dict[str, Handler] = {**billing.HANDLERS}
