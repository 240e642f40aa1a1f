"""The notifications subgraph: the consumer that plans each event's messages, and its event
(`notification.received`, about the user whose inbox it reached)."""

from domains.notifications.plan import Planner
from domains.notifications.templates import Templates
from schema.plugin import Domain

CONSUMER_NAME = "notifications"

domain = Domain(
    name="notifications",
    events=("notification",),
    consumers={CONSUMER_NAME: Planner(Templates()).handlers()},
)
