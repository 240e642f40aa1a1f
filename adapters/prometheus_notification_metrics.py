"""The notification dispatcher's metrics in Prometheus, in the registry of its process."""

from prometheus_client import CollectorRegistry, Counter, Histogram

# Seconds from an event to its message leaving: most within a second, quiet hours hours.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 43200)


class PrometheusNotificationMetrics:
    """`kabinet_notifications_sent`, `_failed`, `_retried`, `_dead_lettered` by `medium` and
    `provider`, and `kabinet_notification_latency_seconds` by `medium`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["medium", "provider"]
        self._sent = Counter(
            "kabinet_notifications_sent",
            "Messages a provider took.",
            labels,
            registry=registry,
        )
        self._failed = Counter(
            "kabinet_notifications_failed",
            "Messages refused for good (bad address, dead device token).",
            labels,
            registry=registry,
        )
        self._retried = Counter(
            "kabinet_notifications_retried",
            "Attempts that failed for now and were queued again after a backoff.",
            labels,
            registry=registry,
        )
        self._dead = Counter(
            "kabinet_notifications_dead_lettered",
            "Messages that ran out of attempts (KABINET_NOTIFY_MAX_ATTEMPTS) and failed.",
            labels,
            registry=registry,
        )
        self._latency = Histogram(
            "kabinet_notification_latency_seconds",
            "Seconds from the event to its message being taken by the provider.",
            ["medium"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def sent(self, medium: str, provider: str, latency_seconds: float) -> None:
        self._sent.labels(medium, provider).inc()
        self._latency.labels(medium).observe(latency_seconds)

    def failed(self, medium: str, provider: str) -> None:
        self._failed.labels(medium, provider).inc()

    def retried(self, medium: str, provider: str) -> None:
        self._retried.labels(medium, provider).inc()

    def dead_lettered(self, medium: str, provider: str) -> None:
        self._dead.labels(medium, provider).inc()
