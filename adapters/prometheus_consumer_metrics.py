"""The event consumers' metrics in Prometheus, registered in the registry their process owns."""

from prometheus_client import CollectorRegistry, Counter, Gauge

from domains.events.metrics import Outcome


class PrometheusConsumerMetrics:
    """`kabinet_consumer_lag`, `kabinet_consumer_events`, `kabinet_consumer_retries`, each
    labelled by `consumer`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._lag = Gauge(
            "kabinet_consumer_lag",
            "Messages a consumer group is behind the end of each partition it reads.",
            ["consumer", "topic", "partition"],
            registry=registry,
        )
        self._events = Counter(
            "kabinet_consumer_events",
            "Messages a consumer finished, by outcome: " + ", ".join(Outcome) + ".",
            ["consumer", "outcome"],
            registry=registry,
        )
        self._retries = Counter(
            "kabinet_consumer_retries",
            "Handler attempts that failed and were tried again after a backoff.",
            ["consumer"],
            registry=registry,
        )

    def finished(self, consumer: str, outcome: Outcome) -> None:
        self._events.labels(consumer, outcome.value).inc()

    def retried(self, consumer: str) -> None:
        self._retries.labels(consumer).inc()

    def lag(self, consumer: str, topic: str, partition: int, behind: int) -> None:
        self._lag.labels(consumer, topic, str(partition)).set(behind)

    def released(self, consumer: str, topic: str, partition: int) -> None:
        self._lag.remove(consumer, topic, str(partition))
