"""Prometheus metrics of the event consumers, registered in the registry their process owns."""

from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Gauge


class Outcome(StrEnum):
    """What became of a message: its handler committed; its event id was already processed;
    it went to the dead-letter topic; no handler wants its type."""

    HANDLED = "handled"
    DUPLICATE = "duplicate"
    DEAD_LETTERED = "dead_lettered"
    IGNORED = "ignored"


class ConsumerMetrics:
    """One set per process: every consumer reports under its own `consumer` label."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.lag = Gauge(
            "kabinet_consumer_lag",
            "Messages a consumer group is behind the end of each partition it reads.",
            ["consumer", "topic", "partition"],
            registry=registry,
        )
        self.events = Counter(
            "kabinet_consumer_events",
            "Messages a consumer finished, by outcome: " + ", ".join(Outcome) + ".",
            ["consumer", "outcome"],
            registry=registry,
        )
        self.retries = Counter(
            "kabinet_consumer_retries",
            "Handler attempts that failed and were tried again after a backoff.",
            ["consumer"],
            registry=registry,
        )
