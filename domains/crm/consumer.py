"""The CRM service's consumer: one group, `kabinet.crm`, writing every customer's timeline
from billing's and support's events, and staff actions from the audit log's."""

from domains.crm import billing, staff, tickets
from domains.events.consumer import Handler

CONSUMER_NAME = "crm"

HANDLERS: dict[str, Handler] = {**billing.HANDLERS, **tickets.HANDLERS, **staff.HANDLERS}
