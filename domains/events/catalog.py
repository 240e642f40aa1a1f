"""Where each event goes: its domain, the domain's topic, and the CloudEvents source.

The wiring makes one catalog from the domains' declarations (each names its event-type
prefixes) and the settings; the relay, a resuming subscriber, the consumers and the hub
all read it, so an event has the same topic and source wherever it is built.
"""

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EventCatalog:
    source: str  # the deployment's prefix: an event's source is `<source>:<domain>`
    domains: Mapping[str, str]  # event-type prefix (`payment` of payment.created) -> domain
    topics: Mapping[str, str]  # domain -> its topic

    def domain_of(self, event_type: str) -> str:
        prefix = event_type.split(".", 1)[0]
        try:
            return self.domains[prefix]
        except KeyError:
            raise ValueError(f"event type {event_type!r} belongs to no known domain") from None

    def topic_of(self, event_type: str) -> str:
        domain = self.domain_of(event_type)
        try:
            return self.topics[domain]
        except KeyError:
            raise ValueError(f"no topic configured for the {domain} domain") from None

    def source_of(self, event_type: str) -> str:
        return f"{self.source}:{self.domain_of(event_type)}"

    @property
    def all_topics(self) -> list[str]:
        return sorted(set(self.topics.values()))
