"""The worker: the outbox relay, the event consumers and periodic housekeeping.

Housekeeping purges old published outbox rows, ends card payments left pending (asking the
provider first), deletes expired idempotency keys and sets offline the support operators
whose sessions all idled out. With its billing schedule on, the
worker also bills each month from its 1st at `KABINET_BILLING_RUN_AT` in
`KABINET_BILLING_TIMEZONE`, catching up on its first tick a run missed while it was down
(domains/billing/billing_schedule.py), and marks overdue invoices hourly and right after a
run, then runs the dunning pass on the same beat (domains/billing/dunning.py): payment
reminders, promised payments that ran out, suspension for debt. With its support schedule on,
it finds tickets past an SLA due time (escalating them) and closes tickets left resolved,
every minute on the services' clock.

Its metrics (`/metrics` of `kabinet worker`) include support's: counts from ticket events,
kept by the `support_monitoring` consumer, and the open tickets and queue age, read from the
database every 30 s (domains/support/monitoring.py says why each comes from where).

`kabinet worker` runs it beside Kafka or RabbitMQ; the API process runs it itself in the
embedded mode (`Settings.run_worker_in_process`). The bus belongs to the services and is
started and stopped by whoever owns them, not by the worker.
"""

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from adapters.prometheus_consumer_metrics import PrometheusConsumerMetrics
from adapters.prometheus_notification_metrics import PrometheusNotificationMetrics
from adapters.prometheus_ticket_metrics import PrometheusTicketMetrics
from domains.billing.autopay import AutopayMode
from domains.billing.billing_schedule import due_period
from domains.billing.dunning import DunningPass, run_dunning
from domains.billing.invoice_overdue import mark_overdue_invoices
from domains.billing.invoice_run import RunProgress, run_invoices
from domains.billing.provider import PaymentProvider
from domains.billing.sweep import PendingSweep, expire_pending_payments, purge_idempotency_keys
from domains.clock import Clock, utcnow
from domains.customers.lifecycle import run_lifecycle
from domains.database import Database
from domains.events.consumer import EventConsumer, Handler
from domains.events.metrics import ConsumerMetrics
from domains.events.relay import OutboxRelay
from domains.notifications.channel import Channel, ChannelKind
from domains.notifications.dispatch import Dispatcher, ResetLinks
from domains.support.autoclose import close_resolved_tickets
from domains.support.monitoring import (
    BACKLOG_INTERVAL,
    TicketMetrics,
    monitoring_handlers,
    ticket_backlog,
)
from domains.support.monitoring import CONSUMER_NAME as MONITORING
from domains.support.presence import offline_without_sessions
from domains.support.sla_breach import BreachSweep, detect_breaches
from gateway.notify_channels import DeliveryChannels, delivery_channels
from gateway.services import Services
from gateway.settings import Settings
from schema.domains import DOMAINS

log = logging.getLogger(__name__)

# How often (seconds): the outbox purge, the billing sweep, the pending-rows gauge.
PURGE_INTERVAL = 3600.0
SWEEP_INTERVAL = 300.0
PENDING_INTERVAL = 5.0
# How often the billing schedule asks whether the month's run is due (seconds), and marks
# overdue invoices (on the services' clock).
BILLING_INTERVAL = 60.0
OVERDUE_INTERVAL = timedelta(hours=1)
# How often the support schedule looks for SLA breaches and tickets to close (seconds).
SUPPORT_INTERVAL = 60.0


class Runnable(Protocol):
    async def run(self, stop: asyncio.Event) -> None:
        """Works until `stop` is set, then finishes what it holds and returns."""


def standard_consumers(services: Services, metrics: ConsumerMetrics) -> list[Runnable]:
    """The services that react to events, as the domains declare them (`Domain.consumers`),
    each its own consumer group reading the topics of the events it handles."""
    return [
        event_consumer(services, name, handlers, metrics)
        for domain in DOMAINS
        for name, handlers in domain.consumers.items()
    ]


def monitoring_consumers(
    services: Services, metrics: ConsumerMetrics, tickets: TicketMetrics
) -> list[Runnable]:
    """The consumers that report to this process's metrics (support's ticket events)."""
    return [event_consumer(services, MONITORING, monitoring_handlers(tickets), metrics)]


def event_consumer(
    services: Services, name: str, handlers: Mapping[str, Handler], metrics: ConsumerMetrics
) -> EventConsumer:
    """A consumer group `name` reading the topics of the events it handles."""
    settings = services.settings
    return EventConsumer(
        name,
        services.db,
        services.bus,
        sorted({services.events.topic_of(event_type) for event_type in handlers}),
        handlers,
        dead_letter_suffix=settings.kafka_dead_letter_suffix,
        max_attempts=settings.consumer_max_attempts,
        backoff=settings.consumer_retry_backoff,
        metrics=metrics,
    )


async def billing_sweep(
    db: Database, provider: PaymentProvider | None, settings: Settings
) -> tuple[PendingSweep, int]:
    """Ends stale pending card payments and deletes expired idempotency keys, as of one
    instant; returns how the payments ended and how many keys went."""
    now = utcnow()
    pending = await expire_pending_payments(
        db, provider, older_than=settings.payment_pending_ttl, now=now
    )
    purged = await purge_idempotency_keys(db, older_than=settings.idempotency_key_ttl, now=now)
    return pending, purged


@dataclass(frozen=True, slots=True)
class SupportSweep:
    """One pass of the support schedule: the SLA breaches it found and escalated, and the
    resolved tickets it closed."""

    breaches: BreachSweep
    closed: int


async def support_sweep(db: Database, settings: Settings, clock: Clock) -> SupportSweep:
    """Finds and escalates SLA breaches, then closes tickets resolved
    `KABINET_TICKET_AUTOCLOSE_DAYS` ago, as of `clock`'s time."""
    breaches = await detect_breaches(db, clock=clock)
    closed = await close_resolved_tickets(
        db, after=timedelta(days=settings.ticket_autoclose_days), clock=clock
    )
    return SupportSweep(breaches, closed)


@dataclass(frozen=True, slots=True)
class BillingTick:
    """What one tick of the billing schedule did: the run it made (None: none was due, or
    the due period's run had finished), how many invoices it marked overdue and what the
    dunning pass did (None: not their hour)."""

    run: RunProgress | None
    overdue: int | None
    dunning: DunningPass | None = None


class _Stopping(Exception):
    """The worker is stopping: the run ends after the batch it committed."""


class Worker:
    def __init__(
        self,
        services: Services,
        consumers: Sequence[Runnable] | None = None,
        registry: CollectorRegistry | None = None,
        *,
        billing_schedule: bool = False,
        support_schedule: bool = False,
        channels: Mapping[ChannelKind, Channel] | None = None,
    ) -> None:
        """`consumers` defaults to `standard_consumers`; `registry` to one of the worker's
        own (inside the API process, the API's, so its /metrics shows the worker's too);
        `billing_schedule` runs the monthly run and overdue marking, `support_schedule` the
        SLA breaches and the closing of resolved tickets; `channels` are what the
        notification dispatcher sends through, by default those the settings configure
        (gateway/notify_channels.py: the log sink in development)."""
        settings = services.settings
        self.services = services
        self.billing_schedule = billing_schedule
        self.support_schedule = support_schedule
        self._next_overdue: datetime | None = None  # None: at the next tick
        self.relay = OutboxRelay(
            services.db,
            services.bus,
            catalog=services.events,
            batch_size=settings.relay_batch_size,
            fallback_poll_interval=settings.relay_fallback_poll_interval.total_seconds(),
            retry_backoff=settings.relay_retry_backoff.total_seconds(),
        )
        self.retention = settings.outbox_retention
        # The worker's metrics, the consumers' and the tickets' among them.
        self.registry = registry if registry is not None else CollectorRegistry()
        self.ticket_metrics = PrometheusTicketMetrics(self.registry)
        consumer_metrics = PrometheusConsumerMetrics(self.registry)
        self.consumers = (
            [
                *standard_consumers(services, consumer_metrics),
                *monitoring_consumers(services, consumer_metrics, self.ticket_metrics),
            ]
            if consumers is None
            else list(consumers)
        )
        self._delivery: DeliveryChannels | None = None
        if channels is None:
            self._delivery = delivery_channels(settings, services.clock, services.limiter)
            channels = self._delivery.channels
        self.dispatcher = Dispatcher(
            services.db,
            channels,
            clock=services.clock,
            links=ResetLinks(services.auth.reset_link_key, settings.password_reset_url),
            max_attempts=settings.notify_max_attempts,
            backoff=settings.notify_retry_backoff,
            poll_interval=settings.notify_poll_interval.total_seconds(),
            metrics=PrometheusNotificationMetrics(self.registry),
        )
        self.pending: int | None = None  # unpublished outbox rows, as last counted
        self.registry.register(_RelayCollector(self))
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._stop = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self.relay.run(self._stop), name="outbox-relay"),
            asyncio.create_task(self._housekeeping(), name="outbox-housekeeping"),
            asyncio.create_task(self._ticket_backlog(), name="ticket-backlog"),
            *(
                [asyncio.create_task(self._billing(), name="billing-schedule")]
                if self.billing_schedule
                else []
            ),
            asyncio.create_task(self.dispatcher.run(self._stop), name="notify-dispatch"),
            *(
                [asyncio.create_task(self._support(), name="support-schedule")]
                if self.support_schedule
                else []
            ),
            *(
                asyncio.create_task(consumer.run(self._stop), name=f"consumer-{index}")
                for index, consumer in enumerate(self.consumers)
            ),
        ]

    async def stop(self) -> None:
        """Lets each part finish what it holds (the relay its batch) and waits for them."""
        self._stop.set()
        tasks, self._tasks = self._tasks, []
        for task, result in zip(
            tasks, await asyncio.gather(*tasks, return_exceptions=True), strict=True
        ):
            if isinstance(result, Exception):
                log.error("%s failed", task.get_name(), exc_info=result)
        if self._delivery is not None:
            await self._delivery.aclose()

    async def run(self, stop: asyncio.Event) -> None:
        """Runs until `stop` is set or one part ends by itself (a crash: the process should
        exit and be restarted rather than go on without it)."""
        await self.start()
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait([stopping, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            crashed = [task.get_name() for task in self._tasks if task.done()]
            await self.stop()
        if crashed:
            raise RuntimeError(f"worker part(s) ended unexpectedly: {', '.join(crashed)}")

    async def _housekeeping(self) -> None:
        """Counts the backlog for the metrics and purges old published rows, now and then."""
        loop = asyncio.get_running_loop()
        next_purge = next_sweep = loop.time()
        while not self._stop.is_set():
            try:
                # Idle, the relay's last batch said the backlog is empty: no need to count.
                self.pending = 0 if self.relay.caught_up else await self.relay.pending()
                if loop.time() >= next_purge:
                    purged = await self.relay.purge_published(self.retention)
                    next_purge = loop.time() + PURGE_INTERVAL
                    if purged:
                        log.info("purged %d published outbox rows", purged)
                if loop.time() >= next_sweep:
                    await self._billing_sweep()
                    await self._presence_sweep()
                    next_sweep = loop.time() + SWEEP_INTERVAL
            except Exception as error:  # the database is away: the relay reports it too
                log.debug("housekeeping failed: %s", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), PENDING_INTERVAL)

    async def _ticket_backlog(self) -> None:
        """Reads the open tickets and the queue for the metrics now and then."""
        while not self._stop.is_set():
            try:
                await self.refresh_ticket_backlog()
            except Exception as error:  # the database is away: the relay reports it too
                log.debug("ticket backlog failed: %s", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), BACKLOG_INTERVAL.total_seconds())

    async def refresh_ticket_backlog(self) -> None:
        """The open-ticket and queue-age gauges, as the database has them now."""
        services = self.services
        self.ticket_metrics.backlog(await ticket_backlog(services.db, services.clock.now()))

    async def _billing(self) -> None:
        """Ticks the billing schedule until the worker stops; a failed tick is tried again at
        the next (a run killed mid-way is carried on by the next run)."""
        while not self._stop.is_set():
            try:
                await self.billing_tick()
            except _Stopping:
                log.info("billing run stopped after a batch; the next run bills what is left")
                return
            except Exception:
                log.exception("billing schedule tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), BILLING_INTERVAL)

    async def billing_tick(self) -> BillingTick:
        """Bills the due period unless its run finished (the run's lock makes a second worker
        wait for the first, then find its record), then marks overdue invoices if an hour
        has passed since it last did, or it has just billed."""
        services, settings = self.services, self.services.settings
        zone = settings.billing_timezone
        # Before the run, which bills by the dated rows anyway: what readers see is today's.
        lifecycle = await run_lifecycle(
            services.db, terms=settings.lifecycle_terms, clock=services.clock
        )
        if lifecycle.tariff_changes or lifecycle.paused or lifecycle.resumed:
            log.info(
                "lifecycle: %d tariff changes, %d paused, %d resumed",
                lifecycle.tariff_changes,
                lifecycle.paused,
                lifecycle.resumed,
            )
        period = due_period(services.clock.now(), zone, settings.billing_run_at)
        run = None
        if period is not None:
            run = await run_invoices(
                services.db,
                period,
                zone=zone,
                due_days=settings.invoice_due_days,
                autopay=AutopayMode(settings.billing_autopay),
                clock=services.clock,
                progress=self._unless_stopping,
                if_unfinished=True,
            )
            if run is not None:
                log.info(
                    "billing run %d for %s finished: %d invoices, %d lines, %s billed,"
                    " %d paid from the balance",
                    run.run_id,
                    f"{period.start:%Y-%m}",
                    run.invoices,
                    run.lines,
                    run.amount,
                    run.autopaid,
                )
        now = services.clock.now()
        if run is None and self._next_overdue is not None and now < self._next_overdue:
            return BillingTick(run, None)
        overdue = await mark_overdue_invoices(services.db, zone=zone, clock=services.clock)
        # After the marking: suspension reads the invoices it has just made overdue.
        dunning = await run_dunning(
            services.db,
            zone=zone,
            offsets=settings.dunning_reminders,
            suspend_after_days=settings.suspend_after_days,
            clock=services.clock,
        )
        self._next_overdue = now + OVERDUE_INTERVAL
        if overdue:
            log.info("%d invoices marked overdue", overdue)
        if dunning.reminded or dunning.expired or dunning.suspended:
            log.info(
                "dunning: %d reminders sent, %d promised payments expired,"
                " %d subscriptions suspended",
                dunning.reminded,
                dunning.expired,
                dunning.suspended,
            )
        return BillingTick(run, overdue, dunning)

    async def _support(self) -> None:
        """Sweeps tickets until the worker stops; a failed pass is tried again at the next
        (each batch it committed stays done)."""
        while not self._stop.is_set():
            try:
                await self.support_tick()
            except Exception:
                log.exception("support schedule tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), SUPPORT_INTERVAL)

    async def support_tick(self) -> SupportSweep:
        services = self.services
        swept = await support_sweep(services.db, services.settings, services.clock)
        breaches = swept.breaches
        if breaches.first_response or breaches.resolution or swept.closed:
            log.info(
                "support: %d first-response and %d resolution breaches (%d raised, %d"
                " reassigned), %d resolved tickets closed",
                breaches.first_response,
                breaches.resolution,
                breaches.raised,
                breaches.reassigned,
                swept.closed,
            )
        return swept

    def _unless_stopping(self, _done: RunProgress) -> None:
        if self._stop.is_set():
            raise _Stopping

    async def _billing_sweep(self) -> None:
        acquiring = self.services.acquiring
        pending, purged = await billing_sweep(
            self.services.db,
            acquiring.provider if acquiring is not None else None,
            self.services.settings,
        )
        if pending.settled or pending.expired or purged:
            log.info(
                "billing sweep: %d pending payments settled, %d expired; %d keys deleted",
                pending.settled,
                pending.expired,
                purged,
            )

    async def _presence_sweep(self) -> None:
        """Operators whose sessions all idled out or expired go offline (a revoked last
        session sets them offline at once)."""
        services = self.services
        gone = await offline_without_sessions(
            services.db,
            now=services.clock.now(),
            idle_timeout=services.settings.session_idle_timeout,
        )
        if gone:
            log.info("%d support operators offline: their sessions ended", gone)


class _RelayCollector(Collector):
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def collect(self) -> Iterator[Metric]:
        relay = self.worker.relay
        if self.worker.pending is not None:
            yield GaugeMetricFamily(
                "kabinet_outbox_pending",
                "Outbox rows not yet published, as counted every few seconds.",
                value=self.worker.pending,
            )
        yield CounterMetricFamily(
            "kabinet_outbox_published",
            "Outbox events the broker acknowledged since this worker started.",
            value=relay.published_total,
        )
        yield GaugeMetricFamily(
            "kabinet_outbox_relay_leader",
            "1 when this worker's relay holds the publishing lock, 0 on standby.",
            value=int(relay.is_leader),
        )
        yield GaugeMetricFamily(
            "kabinet_outbox_relay_failing",
            "1 while the relay's last attempt failed (the broker or database is away).",
            value=int(relay.failing),
        )
