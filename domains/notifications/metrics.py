"""What the dispatcher reports; the process that runs it chooses where it goes (Prometheus:
adapters/prometheus_notification_metrics.py)."""

from typing import Protocol


class NotificationMetrics(Protocol):
    def sent(self, medium: str, provider: str, latency_seconds: float) -> None:
        """A provider took a message, `latency_seconds` after its event happened."""

    def failed(self, medium: str, provider: str) -> None:
        """A message was refused for good (a bad address, a dead token)."""

    def retried(self, medium: str, provider: str) -> None:
        """An attempt failed for now and is tried again after a backoff."""

    def dead_lettered(self, medium: str, provider: str) -> None:
        """A message ran out of attempts and failed."""
