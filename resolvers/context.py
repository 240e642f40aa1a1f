"""What every resolver receives as `info.context`."""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from dataloaders import Loaders
from domains.billing.card import Acquiring
from domains.billing.promised_payment import PromiseTerms
from domains.clock import SYSTEM_CLOCK, Clock
from domains.customers.terms import DEFAULT_TERMS, LifecycleTerms
from domains.database import Database
from domains.events.catalog import EventCatalog
from domains.identity.auth import Auth
from domains.identity.session import Client
from domains.identity.viewer import Viewer, require_viewer
from domains.limits import Decision
from domains.notifications.delivery_report import DeliveryReports
from subscriptions.hub import Hub


@dataclass
class Context:
    db: Database
    auth: Auth
    loaders: Loaders
    viewer: Viewer | None
    # Where events go and their CloudEvents source: an event replayed to a resuming
    # subscriber carries the source the relay published it with.
    events: EventCatalog
    # The transport's request (Starlette's), for client address and headers.
    request: Any = None
    # `node(id:)`'s loader of each Node type, by the type name in global ids.
    nodes: Mapping[str, Callable[[Any, str], Awaitable[Any]]] = field(default_factory=dict)
    # Set while an operation runs: its computed cost, and the rate limiter's answer to it.
    operation_cost: int = 0
    rate_limit: Decision | None = None
    # The payment provider card payments go through; None when none is configured.
    acquiring: Acquiring | None = None
    # The services' clock: actions whose rules run on time (a ticket's SLA and reopen
    # window, a promised payment's days) read it, so tests move it instead of waiting.
    clock: Clock = SYSTEM_CLOCK
    # How long after its resolution a customer's message reopens a ticket
    # (KABINET_TICKET_REOPEN_DAYS).
    ticket_reopen_window: timedelta = timedelta(days=14)
    # The SMS gateways' delivery-report secrets, for their signed callbacks.
    delivery_reports: DeliveryReports | None = None
    # What a promised payment may be (KABINET_PROMISED_PAYMENT_*); None: not offered.
    promise_terms: PromiseTerms | None = None
    # The billing time zone and a pause's limits (KABINET_PAUSE_*), for tariff changes,
    # prices and pauses, which start on a day.
    lifecycle: LifecycleTerms = DEFAULT_TERMS
    # Live updates: this process's event hub (None where subscriptions are not served) and
    # how many missed events a resuming subscriber may be sent.
    hub: Hub | None = None
    catch_up_limit: int = 1_000
    # Ends the client's connection (a websocket) for the given reason; None for transports
    # whose connection ends with the response.
    disconnect: Callable[[str], None] | None = None
    # What a websocket client sent in connection_init (its access token); strawberry fills it.
    connection_params: dict[str, Any] | None = None

    @property
    def client_ip(self) -> str | None:
        client = getattr(self.request, "client", None)
        return client.host if client is not None else None

    def client(self, device: str | None = None) -> Client:
        """The caller as a session records it: address, User-Agent, its own device name."""
        headers = getattr(self.request, "headers", None) or {}
        return Client(self.client_ip, headers.get("user-agent", ""), device)

    @property
    def signed_in(self) -> Viewer:
        return require_viewer(self.viewer)
