"""Settings from `KABINET_*` environment variables; `env` picks the hardening defaults."""

import re
from datetime import time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from domains.customers.terms import LifecycleTerms

REPO_ROOT = Path(__file__).resolve().parent.parent

DEV_DATABASE_URL = f"sqlite+aiosqlite:///{REPO_ROOT / 'var' / 'kabinet.db'}"
DEV_SIGNING_KEY_FILE = REPO_ROOT / "var" / "jwt-signing-key.pem"
DEVELOPMENT_MAX_BATCH = 10
_HH_MM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KABINET_", extra="ignore")

    env: Literal["development", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    log_level: str = "info"

    database_url: str = DEV_DATABASE_URL
    # Per process; see README "Connections" for sizing N processes under max_connections.
    database_pool_size: int = Field(
        5,
        ge=1,
        le=500,
        description="Pooled PostgreSQL connections kept open per process for units of work.",
    )
    database_max_overflow: int = Field(
        0, ge=0, le=500, description="Connections opened (and closed) beyond the pool."
    )
    database_read_pool_size: int = Field(
        10, ge=1, le=500, description="PostgreSQL connections per process for declared reads."
    )
    database_pool_timeout: float = Field(
        5.0, gt=0, le=60, description="Seconds a request waits for a connection, then 503."
    )
    redis_url: str | None = None
    cache_redis_url: str | None = Field(
        None,
        description="Redis for shared caches (persisted queries): an instance with an "
        "eviction policy, never the sessions' one; unset: each process caches alone.",
    )
    single_instance: bool = Field(
        False,
        description="Production on embedded stores (SQLite, in-process sessions): for one "
        "process only, never several behind a load balancer.",
    )
    event_broker: Literal["kafka", "rabbitmq"] = Field(
        "kafka",
        description="The events' broker: Kafka (at kafka_bootstrap; the in-process bus "
        "without it) or RabbitMQ (at rabbitmq_url).",
    )
    kafka_bootstrap: str | None = Field(
        None, description="Kafka brokers (host:port,...); the in-process bus without it."
    )
    rabbitmq_url: str = Field(
        "amqp://guest:guest@127.0.0.1:5672/",
        description="RabbitMQ (AMQP 0-9-1 URL, with its vhost) when event_broker is rabbitmq.",
    )

    jwt_private_key: SecretStr | None = Field(
        None, description="Ed25519 private key (PEM); or use jwt_private_key_file."
    )
    jwt_private_key_file: Path | None = None
    jwt_previous_public_key_files: list[Path] = Field(
        default_factory=list,
        description="Retired signing keys (public PEM) still trusted until their tokens expire.",
    )
    jwt_issuer: str = "kabinet"
    jwt_audience: str = "kabinet-api"
    access_token_ttl: timedelta = timedelta(minutes=15)

    # Sessions: the access token names its session; a revoked session stops it at once.
    session_idle_timeout: timedelta = timedelta(days=14)
    session_absolute_timeout: timedelta = timedelta(days=30)
    session_check_cache_seconds: float = Field(2.0, ge=0, le=5)
    refresh_token_idle_timeout: timedelta = timedelta(days=14)
    refresh_cookie: bool = Field(
        False, description="Also set the refresh token as a __Host- cookie (web portal)."
    )
    password_reset_ttl: timedelta = timedelta(minutes=30)
    invitation_days: int = Field(
        7, ge=1, le=90, description="Days a new customer's invitation link sets the password."
    )

    # Brute force and rate limits (per window); see README "Limits".
    login_attempts_per_account_and_ip: int = Field(
        5, ge=1, description="Sign-in attempts on one account from one address; successes free."
    )
    login_attempts_per_account: int = Field(
        100,
        ge=1,
        description="Sign-in attempts on one account from everywhere; past it each address "
        "gets one attempt per window on that account (slowed, never locked out).",
    )
    login_attempts_per_ip: int = Field(30, ge=1)
    login_window: timedelta = timedelta(minutes=15)
    mutations_per_user_per_minute: int = Field(60, ge=1)
    mutations_per_ip_per_minute: int = Field(120, ge=1)
    query_cost_per_user_per_minute: int = Field(20_000, ge=1)
    query_cost_per_ip_per_minute: int = Field(40_000, ge=1)
    rate_limit_on_store_failure: Literal["open", "closed"] = Field(
        "open",
        description="When Redis is unreachable: let requests through, or refuse them. "
        "Sign-in budgets always refuse.",
    )

    # GraphQL limits, each enforced before any resolver runs.
    graphql_max_depth: int = Field(10, ge=1)
    graphql_max_aliases: int = Field(30, ge=1)
    graphql_max_tokens: int = Field(2_000, ge=1)
    graphql_max_directives: int = Field(20, ge=0)
    graphql_max_batch: int | None = Field(
        None,
        ge=1,
        description="Operations per batched request; default: 10 in development, "
        "batching off in production.",
    )
    graphql_max_cost: int = Field(5_000, ge=1)
    graphql_max_representations: int = Field(
        100, ge=1, description="Entities one operation may ask `_entities` for."
    )
    # schema.planned.Execution's values; named here so settings import no schema.
    graphql_execution: Literal["planned", "graphql-core", "checked"] = "planned"
    max_body_bytes: int = Field(100_000, ge=1_000)
    introspection: bool | None = Field(None, description="Default: on in development only.")
    field_suggestions: bool | None = Field(None, description="Default: on in development only.")
    persisted_queries_only: bool = Field(
        False, description="Accept only operations registered in the safelist."
    )
    persisted_queries_file: Path | None = Field(
        None, description="JSON safelist {sha256: query}; e.g. from a client build."
    )

    # Card payments and top-ups: the acquirer's API, its webhook secret, where payers return.
    payment_provider_url: str | None = Field(
        None, description="The sandbox acquirer's base URL; card payments are off without it."
    )
    payment_webhook_secret: SecretStr | None = Field(
        None, description="Shared secret of the provider's webhook signatures (HMAC-SHA256)."
    )
    payment_webhook_tolerance: timedelta = timedelta(minutes=5)
    payment_return_url: str = "http://127.0.0.1:8000/"
    # `kabinet billing sweep`: card payments pending this long are settled or expired;
    # idempotency keys are deleted once this old (never sooner than the 24 h they answer).
    payment_pending_ttl: timedelta = timedelta(hours=1)
    idempotency_key_ttl: timedelta = Field(timedelta(hours=24), ge=timedelta(hours=24))
    # Notification channels (gateway/notify_channels.py); each one left unset prints what it
    # would send instead (the log sink), in development only.
    notify_log_sink: bool | None = Field(
        None,
        description="Print the email, SMS and push of unconfigured channels; default: on in "
        "development, off in production (a channel not configured there sends nothing).",
    )
    notify_provider_rates: dict[str, int] = Field(
        default_factory=dict,
        description="Messages per second a provider takes (JSON object, provider -> rate: "
        '{"smsc": 30, "fcm": 500}); the rest are not throttled.',
    )
    smtp_host: str | None = Field(None, description="The SMTP server email is sent through.")
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_starttls: bool | None = Field(
        None,
        description="Upgrade with STARTTLS (port 587), refused if not offered; default: on "
        "unless KABINET_SMTP_TLS.",
    )
    smtp_tls: bool = Field(False, description="TLS from the first byte (port 465).")
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "Kabinet <noreply@kabinet.local>"
    smtp_connections: int = Field(
        4, ge=1, le=100, description="SMTP sessions kept open and reused, per process."
    )
    smtp_ca_file: Path | None = Field(
        None, description="CA certificates the SMTP server's is checked against (a private CA)."
    )
    sms_url: str | None = Field(
        None,
        description="The SMS gateway's base URL (SMSC.ru-shaped API, adapters/sms_gateway.py).",
    )
    sms_provider: str = Field("smsc", description="Its name in records and report URLs.")
    sms_login: str | None = None
    sms_password: SecretStr | None = None
    sms_sender: str = Field("Kabinet", description="The approved sender name.")
    sms_report_secret: SecretStr | None = Field(
        None, description="Its delivery reports' signing secret (HMAC-SHA256)."
    )
    sms_failover_url: str | None = Field(
        None, description="A second gateway, tried when the first fails temporarily."
    )
    sms_failover_provider: str = "smsc-reserve"
    sms_failover_login: str | None = None
    sms_failover_password: SecretStr | None = None
    sms_failover_report_secret: SecretStr | None = None
    sms_report_tolerance: timedelta = timedelta(minutes=5)
    fcm_service_account_file: Path | None = Field(
        None, description="The Google service account key (JSON) Android push is sent as."
    )
    fcm_url: str = "https://fcm.googleapis.com"
    apns_key_file: Path | None = Field(
        None, description="The team's APNs auth key (.p8) iOS push is signed with."
    )
    apns_key_id: str | None = None
    apns_team_id: str | None = None
    apns_topic: str | None = Field(
        None, description="The app's bundle id, for devices registered without one."
    )
    apns_url: str = Field(
        "https://api.push.apple.com",
        description="APNs; https://api.sandbox.push.apple.com for development builds.",
    )
    apns_ca_file: Path | None = None

    # The monthly invoice run: its periods are calendar months in this zone, and an invoice
    # it issues is due this many days after the day it is issued.
    billing_timezone: ZoneInfo = ZoneInfo("Europe/Moscow")
    invoice_due_days: int = Field(10, ge=0, le=365)
    billing_run_at: time = Field(
        time(3, 0),
        description="HH:MM in KABINET_BILLING_TIMEZONE: the worker bills the month from its "
        "1st at this time (domains/billing/billing_schedule.py).",
    )
    billing_schedule: bool | None = Field(
        None,
        description="The worker runs the monthly run and marks overdue invoices; default: in "
        "`kabinet worker`, not in the API's in-process worker (bill with `kabinet billing run`).",
    )
    # What the run pays from the balance (domains/billing/autopay.py's AutopayMode): the
    # invoices it covers, also part of those it does not, or nothing.
    billing_autopay: Literal["full", "partial", "off"] = "full"
    # Dunning (domains/billing/dunning.py, suspension.py, promised_payment.py).
    dunning_reminders: Annotated[tuple[int, ...], NoDecode] = Field(
        (-3, 0, 3),
        description="Days from an unpaid invoice's due date (negative: before it) on which "
        "the worker sends `invoice.payment_reminder`, comma-separated, in the billing zone.",
    )
    suspend_after_days: int = Field(
        10,
        ge=0,
        le=365,
        description="An invoice this many days overdue suspends the subscriptions it bills.",
    )
    promised_payment_max: Decimal = Field(
        Decimal("500.00"), gt=0, le=Decimal("1000000.00"), decimal_places=2
    )
    promised_payment_days: int = Field(3, ge=1, le=31)
    promised_payments_per_28_days: int = Field(2, ge=1, le=28)
    # Voluntary pauses (domains/customers/pause.py).
    pause_min_days: int = Field(7, ge=1, le=366, description="The shortest pause, in days.")
    pause_max_days: int = Field(
        90, ge=1, le=366, description="Days a subscription may be paused in a calendar year."
    )

    # Support tickets' lifecycle (domains/support/lifecycle.py): a customer's message reopens
    # a resolved ticket within this many days of its resolution; the worker closes a ticket
    # left resolved this many days.
    ticket_reopen_days: int = Field(14, ge=0, le=365)
    ticket_autoclose_days: int = Field(7, ge=1, le=365)
    support_schedule: bool | None = Field(
        None,
        description="The worker finds SLA breaches (and escalates them) and closes resolved "
        "tickets every minute; default: in `kabinet worker`, not in the API's in-process "
        "worker (sweep with `kabinet support sweep`).",
    )

    # Domain events: outbox relay, Kafka topics, consumers, live subscriptions.
    kafka_topics: dict[str, str] = Field(
        default_factory=dict,
        description="A domain's topic when not `kabinet.<domain>` (JSON object, domain -> topic).",
    )
    kafka_dead_letter_suffix: str = Field(".dlq", description="Dead-letter topic: topic + this.")
    kafka_partitions: int = Field(
        6,
        ge=1,
        description="Partitions of the topics the relay creates (on RabbitMQ: each consumer "
        "group's partition queues; every process of a deployment must say the same).",
    )
    kafka_idempotent_producer: bool = Field(
        True, description="Idempotent producer (Apache Kafka); off for brokers without it."
    )
    kafka_client_id: str = "kabinet"
    event_source: str = Field("urn:kabinet", description="CloudEvents `source` prefix.")
    kafka_fetch_max_wait: timedelta = Field(
        timedelta(milliseconds=50),
        description="Longest a consumer's fetch waits for data; bounds live-event latency.",
    )
    relay_fallback_poll_interval: timedelta = Field(
        timedelta(seconds=5),
        gt=timedelta(0),
        description="The relay wakes on each commit that wrote events (PostgreSQL "
        "LISTEN/NOTIFY); it also looks at the outbox this often unprompted.",
    )
    relay_retry_backoff: timedelta = Field(
        timedelta(milliseconds=50),
        gt=timedelta(0),
        description="The relay's first retry delay when publishing fails; doubles to 30 s.",
    )
    relay_batch_size: int = Field(500, ge=1, le=10_000)
    outbox_retention: timedelta = Field(
        timedelta(days=7), description="Published outbox rows are kept this long (catch-up)."
    )
    consumer_max_attempts: int = Field(5, ge=1, description="Tries before the dead-letter topic.")
    consumer_retry_backoff: timedelta = timedelta(milliseconds=200)
    # Notifications (domains/notifications/dispatch.py): attempts per message before it
    # fails as a dead letter, the first retry's delay (doubling), and the reset page.
    notify_max_attempts: int = Field(
        5, ge=1, le=50, description="Sends tried per message before it is a dead letter."
    )
    notify_retry_backoff: timedelta = Field(timedelta(seconds=30), gt=timedelta(0))
    notify_poll_interval: timedelta = Field(
        timedelta(milliseconds=200),
        gt=timedelta(0),
        description="How often an idle dispatcher looks for due notifications.",
    )
    password_reset_url: str = Field(
        "http://127.0.0.1:8000/reset-password",
        description="The page the reset email links to; the token is its `token` parameter.",
    )
    worker_in_process: bool | None = Field(
        None,
        description="Run the relay and consumers inside the API process; default: on with "
        "the in-process bus (no broker), off with Kafka or RabbitMQ (run `kabinet worker`).",
    )
    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="`kabinet serve` serves /metrics on this port alone; without it /metrics "
        "is on the API port in development and nowhere in production.",
    )
    worker_metrics_port: int | None = Field(
        None, ge=1, le=65535, description="`kabinet worker` serves /metrics here (lag)."
    )
    subscription_queue_size: int = Field(
        100, ge=1, description="Events buffered per subscriber before it is disconnected."
    )
    subscriptions_per_user: int = Field(
        50, ge=1, description="Live subscriptions one user may hold on one API process."
    )
    subscription_catch_up_limit: int = Field(
        1_000, ge=1, description="Most missed events replayed to a reconnecting subscriber."
    )

    cors_origins: list[str] = Field(default_factory=list)
    trusted_proxies: list[str] = Field(
        default_factory=lambda: ["127.0.0.1"],
        description="Addresses or networks (CIDR) whose X-Forwarded-For/-Proto are believed: "
        "the load balancers in front; budgets and sessions then see the client's address.",
    )
    node_modules: Path = REPO_ROOT / "node_modules"
    graphiql: bool | None = Field(None, description="Serve GraphiQL; default: on in development.")
    graphql_get_needs_preflight: bool | None = Field(
        None,
        description="GET operations need a header only a CORS preflight allows (CSRF); "
        "default: on in production.",
    )
    # Federation: who may use the subgraph endpoints (`_service`, `_entities`).
    router_secret: SecretStr | None = Field(
        None,
        description="A router sends it as the Kabinet-Router-Secret header; required on the "
        "subgraph endpoints when set. Unset: open in development, off in production.",
    )

    @field_validator("billing_run_at", mode="before")
    @classmethod
    def _hh_mm(cls, value: object) -> object:
        """Wall time in the billing zone, to the minute: no seconds, no UTC offset of its own."""
        if isinstance(value, time) and value.tzinfo is None:
            return value
        if isinstance(value, str) and _HH_MM.fullmatch(value):
            return time.fromisoformat(value)
        raise ValueError(f"a time of day is HH:MM (00:00 to 23:59), not {value!r}")

    @model_validator(mode="after")
    def _one_smtp_tls(self) -> "Settings":
        if self.smtp_tls and self.smtp_starttls is True:
            raise ValueError(
                "KABINET_SMTP_TLS (port 465) and KABINET_SMTP_STARTTLS (587) exclude each "
                "other: set one to false"
            )
        return self

    @field_validator("dunning_reminders", mode="before")
    @classmethod
    def _offsets(cls, value: object) -> object:
        """ "-3,0,3": distinct whole days, sorted, at least one."""
        if isinstance(value, str):
            try:
                value = [int(part) for part in value.split(",")]
            except ValueError:
                message = f"reminder offsets are whole days, e.g. -3,0,3, not {value!r}"
                raise ValueError(message) from None
        if isinstance(value, list | tuple):
            if not value or len(set(value)) != len(value):
                raise ValueError("reminder offsets are one or more distinct days")
            return tuple(sorted(value))
        return value

    @property
    def lifecycle_terms(self) -> LifecycleTerms:
        """The billing zone and pause limits the customers' lifecycle rules read."""
        return LifecycleTerms(self.billing_timezone, self.pause_min_days, self.pause_max_days)

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    def _development_default(self, value: bool | None) -> bool:
        return (not self.is_production) if value is None else value

    @property
    def run_worker_in_process(self) -> bool:
        if self.worker_in_process is not None:
            return self.worker_in_process
        return self.in_process_bus

    @property
    def in_process_bus(self) -> bool:
        """No broker configured: the embedded mode's bus, in this process."""
        return self.event_broker == "kafka" and self.kafka_bootstrap is None

    @property
    def metrics_on_api_port(self) -> bool:
        """Metrics tell an attacker about traffic, errors and logins: not on a public port."""
        return self.metrics_port is None and not self.is_production

    @property
    def smtp_starttls_enabled(self) -> bool:
        return not self.smtp_tls if self.smtp_starttls is None else self.smtp_starttls

    @property
    def notify_log_sink_enabled(self) -> bool:
        return self._development_default(self.notify_log_sink)

    @property
    def graphiql_enabled(self) -> bool:
        return self._development_default(self.graphiql)

    @property
    def introspection_enabled(self) -> bool:
        return self._development_default(self.introspection)

    @property
    def field_suggestions_enabled(self) -> bool:
        return self._development_default(self.field_suggestions)

    def check_stores(self) -> None:
        """Several production instances must share their stores: each keeping its own
        sessions would let a session revoked on one live on in the others."""
        if not self.is_production or self.single_instance:
            return
        if not self.database_url.startswith("postgresql"):
            raise RuntimeError(
                "production needs PostgreSQL: set KABINET_DATABASE_URL to a "
                "postgresql+asyncpg:// URL (or KABINET_SINGLE_INSTANCE=true for one process)"
            )
        if not self.redis_url:
            raise RuntimeError(
                "production needs Redis for sessions and limits: set KABINET_REDIS_URL "
                "(or KABINET_SINGLE_INSTANCE=true for one process)"
            )

    @property
    def graphql_batch_limit(self) -> int:
        """Operations one request may batch; 0: batching is off."""
        if self.graphql_max_batch is not None:
            return self.graphql_max_batch
        return 0 if self.is_production else DEVELOPMENT_MAX_BATCH

    @property
    def graphql_get_preflight_required(self) -> bool:
        if self.graphql_get_needs_preflight is not None:
            return self.graphql_get_needs_preflight
        return self.is_production

    @property
    def subgraphs_served(self) -> bool:
        """Subgraph endpoints: behind the router secret when set; without it, development only."""
        return self.router_secret is not None or not self.is_production

    def signing_key_pem(self) -> bytes:
        """The configured key; development falls back to the file `kabinet dev` generates."""
        if self.is_production and not (self.jwt_private_key or self.jwt_private_key_file):
            raise RuntimeError(
                "production needs KABINET_JWT_PRIVATE_KEY or KABINET_JWT_PRIVATE_KEY_FILE"
            )
        if self.jwt_private_key is not None:
            return self.jwt_private_key.get_secret_value().encode()
        path = self.jwt_private_key_file or DEV_SIGNING_KEY_FILE
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise RuntimeError(
                f"no JWT signing key at {path}: run `kabinet keygen {path}` (make dev does)"
            ) from None
