"""Support's ticket metrics in Prometheus, registered in the registry the worker owns."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from domains.support.models import ACTIVE_STATUSES, TicketCategory, TicketPriority
from domains.support.monitoring import TicketBacklog

# Seconds; around the first-response targets (urgent 15 min, high 1 h, normal 4 h, low 8 h)
# so a histogram_quantile near each target is read between close buckets.
FIRST_RESPONSE_BUCKETS = (
    60,
    300,
    900,
    1800,
    3600,
    7200,
    14400,
    28800,
    57600,
    86400,
    259200,
)
SLA_TARGETS = ("first_response", "resolution")


class PrometheusTicketMetrics:
    """`kabinet_tickets_created`, `kabinet_tickets_resolved` (by category and priority),
    `kabinet_ticket_first_response_seconds` (by priority), `kabinet_ticket_sla_breaches`
    (by target and priority): this worker's counts from ticket events since it started.
    `kabinet_tickets_open` (by priority and status) and
    `kabinet_ticket_queue_oldest_age_seconds`: as last read from the database."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._created = Counter(
            "kabinet_tickets_created",
            "Tickets opened, by category and priority at creation.",
            ["category", "priority"],
            registry=registry,
        )
        self._resolved = Counter(
            "kabinet_tickets_resolved",
            "Tickets resolved (each resolution of a reopened ticket again), by category and "
            "priority.",
            ["category", "priority"],
            registry=registry,
        )
        self._first_response = Histogram(
            "kabinet_ticket_first_response_seconds",
            "Time from a ticket's creation to support's first public answer, by priority.",
            ["priority"],
            buckets=FIRST_RESPONSE_BUCKETS,
            registry=registry,
        )
        self._breaches = Counter(
            "kabinet_ticket_sla_breaches",
            "Tickets that missed an SLA target (first_response or resolution), by priority.",
            ["target", "priority"],
            registry=registry,
        )
        self._open = Gauge(
            "kabinet_tickets_open",
            "Tickets new, open or pending the customer, by priority and status, as read from "
            "the database every 30 s (the same on every worker: take max).",
            ["priority", "status"],
            registry=registry,
        )
        self._queue_age = Gauge(
            "kabinet_ticket_queue_oldest_age_seconds",
            "How long the oldest unassigned ticket has waited in the queue (0: empty), as "
            "read from the database every 30 s.",
            registry=registry,
        )
        # Every series exists from the start, so rates and alerts see 0 rather than nothing.
        for category in TicketCategory:
            for priority in TicketPriority:
                self._created.labels(category.value, priority.value)
                self._resolved.labels(category.value, priority.value)
        for priority in TicketPriority:
            self._first_response.labels(priority.value)
            for target in SLA_TARGETS:
                self._breaches.labels(target, priority.value)
            for status in ACTIVE_STATUSES:
                self._open.labels(priority.value, status.value)

    def created(self, category: str, priority: str) -> None:
        self._created.labels(category, priority).inc()

    def resolved(self, category: str, priority: str) -> None:
        self._resolved.labels(category, priority).inc()

    def first_response(self, priority: str, seconds: float) -> None:
        self._first_response.labels(priority).observe(seconds)

    def sla_breached(self, target: str, priority: str) -> None:
        self._breaches.labels(target, priority).inc()

    def backlog(self, backlog: TicketBacklog) -> None:
        for (priority, status), count in backlog.open.items():
            self._open.labels(priority.value, status.value).set(count)
        self._queue_age.set(backlog.queue_age.total_seconds())
