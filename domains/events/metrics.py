"""What the event consumers report about themselves; the process that runs them chooses
where it goes (Prometheus: adapters/prometheus_consumer_metrics.py)."""

from enum import StrEnum
from typing import Protocol


class Outcome(StrEnum):
    """What became of a message: its handler committed; its event id was already processed;
    it went to the dead-letter topic; no handler wants its type."""

    HANDLED = "handled"
    DUPLICATE = "duplicate"
    DEAD_LETTERED = "dead_lettered"
    IGNORED = "ignored"


class ConsumerMetrics(Protocol):
    """One set per process: every consumer reports under its own name."""

    def finished(self, consumer: str, outcome: Outcome) -> None:
        """A message reached its outcome."""

    def retried(self, consumer: str) -> None:
        """A handler attempt failed and will be tried again after a backoff."""

    def lag(self, consumer: str, topic: str, partition: int, behind: int) -> None:
        """The consumer is `behind` messages from the end of a partition it reads."""

    def released(self, consumer: str, topic: str, partition: int) -> None:
        """The consumer no longer reads the partition: another member reports its lag."""
