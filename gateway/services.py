"""What one app instance owns: settings, clock, database, Redis, tokens, sessions, metrics."""

import hashlib
import hmac
from dataclasses import dataclass
from datetime import timedelta

from redis.asyncio import Redis

from adapters.acquirer_client import SandboxProvider
from adapters.kafka_bus import KafkaBus
from adapters.rabbitmq_bus import RabbitMQBus
from adapters.redis_limiter import RedisRateLimiter
from adapters.redis_session_store import RedisSessionStore
from domains.billing.card import Acquiring
from domains.billing.provider import PaymentProvider
from domains.clock import SYSTEM_CLOCK, Clock
from domains.database import Database
from domains.events.bus import EventBus
from domains.events.catalog import EventCatalog
from domains.events.consumer import group_of
from domains.events.memory_bus import MemoryBus
from domains.identity.auth import Auth
from domains.identity.session import Sessions
from domains.identity.session_store import MemorySessionStore, SessionStore
from domains.identity.throttle import Throttle
from domains.identity.tokens import TokenService
from domains.limits import MemoryRateLimiter, Rate, RateLimiter
from gateway.metrics import Metrics
from gateway.persisted import PersistedQueries
from gateway.ratelimit import Budgets
from gateway.settings import Settings
from schema.domains import DOMAINS


def payment_provider(settings: Settings) -> PaymentProvider | None:
    """The acquirer card payments go through; None when none is configured."""
    if not settings.payment_provider_url:
        return None
    return SandboxProvider(settings.payment_provider_url)


def reset_link_key(settings: Settings) -> bytes:
    """The key of password-reset links, derived from the signing key: every process of a
    deployment (the API that issues a link, the notifier that sends it) holds the same one,
    no setting more to keep secret, and rotating the signing key voids the links with it."""
    return hmac.new(settings.signing_key_pem(), b"kabinet reset-link key", hashlib.sha256).digest()


def event_catalog(settings: Settings) -> EventCatalog:
    """A domain's events go to its topic, `kabinet.<domain>` unless KABINET_KAFKA_TOPICS
    names another, with the source `<KABINET_EVENT_SOURCE>:<domain>`."""
    return EventCatalog(
        source=settings.event_source,
        domains={prefix: domain.name for domain in DOMAINS for prefix in domain.events},
        topics={
            domain.name: settings.kafka_topics.get(domain.name, f"kabinet.{domain.name}")
            for domain in DOMAINS
            if domain.events
        },
    )


def consumer_groups(events: EventCatalog) -> dict[str, list[str]]:
    """The consumer groups the domains declare (`Domain.consumers`) and the topics each
    reads: the worker runs them, and RabbitMQ declares their queues before the first event
    is published, so none is missed while the worker is not yet up."""
    return {
        group_of(name): sorted({events.topic_of(event_type) for event_type in handlers})
        for domain in DOMAINS
        for name, handlers in domain.consumers.items()
    }


def event_bus(settings: Settings, events: EventCatalog) -> EventBus:
    """Kafka or RabbitMQ as `KABINET_EVENT_BROKER` says; the in-process bus without a
    broker (Kafka without `KABINET_KAFKA_BOOTSTRAP`)."""
    if settings.event_broker == "rabbitmq":
        return RabbitMQBus(
            settings.rabbitmq_url,
            partitions=settings.kafka_partitions,
            dead_letter_suffix=settings.kafka_dead_letter_suffix,
            groups=consumer_groups(events),
            client_name=settings.kafka_client_id,
        )
    if settings.kafka_bootstrap:
        return KafkaBus(
            settings.kafka_bootstrap,
            client_id=settings.kafka_client_id,
            idempotent=settings.kafka_idempotent_producer,
            partitions=settings.kafka_partitions,
            fetch_max_wait=settings.kafka_fetch_max_wait.total_seconds(),
        )
    return MemoryBus(partitions=settings.kafka_partitions)


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    # What every rule that decides by the time reads: the system's, or a test's own.
    clock: Clock
    db: Database
    # None in the embedded mode: sessions and limits then live in this process.
    redis: Redis | None
    tokens: TokenService
    limiter: RateLimiter
    budgets: Budgets
    auth: Auth
    persisted: PersistedQueries
    metrics: Metrics
    # Redis for caches that may be evicted (persisted queries), apart from the sessions'.
    cache: Redis | None
    # Kafka or RabbitMQ when configured; else the in-process bus (relay and readers in
    # this process).
    bus: EventBus
    events: EventCatalog
    # None when no payment provider is configured: card payments are then refused.
    acquiring: Acquiring | None = None

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock = SYSTEM_CLOCK) -> "Services":
        settings.check_stores()
        db = Database(
            settings.database_url,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
            read_pool_size=settings.database_read_pool_size,
            pool_timeout=settings.database_pool_timeout,
        )
        tokens = TokenService(
            settings.signing_key_pem(),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            access_ttl=settings.access_token_ttl,
            clock=clock,
            previous_public_keys=[
                path.read_bytes() for path in settings.jwt_previous_public_key_files
            ],
        )
        client = Redis.from_url(settings.redis_url) if settings.redis_url else None
        cache = Redis.from_url(settings.cache_redis_url) if settings.cache_redis_url else None
        store: SessionStore
        limiter: RateLimiter
        # Sign-in budgets fail closed whatever the general policy (domains/identity/throttle.py).
        login_limiter: RateLimiter
        if client is None:
            store, limiter = MemorySessionStore(clock), MemoryRateLimiter(clock)
            login_limiter = limiter
        else:
            store = RedisSessionStore(client, clock)
            limiter = RedisRateLimiter(
                client, clock, on_failure=settings.rate_limit_on_store_failure
            )
            login_limiter = RedisRateLimiter(client, clock, on_failure="closed")
        sessions = Sessions(
            db,
            store,
            clock,
            idle_timeout=settings.session_idle_timeout,
            absolute_timeout=settings.session_absolute_timeout,
            check_cache_seconds=settings.session_check_cache_seconds,
            on_all_ended=[told for domain in DOMAINS for told in domain.sessions_ended],
        )
        throttle = Throttle(
            login_limiter,
            per_pair=Rate(settings.login_attempts_per_account_and_ip, settings.login_window),
            per_account=Rate(settings.login_attempts_per_account, settings.login_window),
            per_address=Rate(settings.login_attempts_per_ip, settings.login_window),
        )
        metrics = Metrics()
        auth = Auth(
            db=db,
            clock=clock,
            tokens=tokens,
            sessions=sessions,
            throttle=throttle,
            refresh_idle_timeout=settings.refresh_token_idle_timeout,
            password_reset_ttl=settings.password_reset_ttl,
            reset_link_key=reset_link_key(settings),
            invitation_ttl=timedelta(days=settings.invitation_days),
            on_login=metrics.count_login,
        )
        provider = payment_provider(settings)
        events = event_catalog(settings)
        return cls(
            settings=settings,
            clock=clock,
            db=db,
            redis=client,
            tokens=tokens,
            limiter=limiter,
            budgets=Budgets(limiter, settings),
            auth=auth,
            persisted=PersistedQueries.from_settings(settings, redis=cache),
            cache=cache,
            events=events,
            metrics=metrics,
            bus=event_bus(settings, events),
            acquiring=Acquiring(
                provider,
                settings.payment_return_url,
                webhook_secret=settings.payment_webhook_secret.get_secret_value().encode()
                if settings.payment_webhook_secret is not None
                else None,
                webhook_tolerance=settings.payment_webhook_tolerance,
            )
            if provider is not None
            else None,
        )

    async def aclose(self) -> None:
        await self.db.dispose()
        for client in (self.redis, self.cache):
            if client is not None:
                await client.aclose()
