"""What every resolver receives as `info.context`."""

from dataclasses import dataclass
from typing import Any

from dataloaders import Loaders
from domains.billing.card import Acquiring
from domains.database import Database
from domains.identity.auth import Auth
from domains.identity.session import Client
from domains.identity.viewer import Viewer, require_viewer
from domains.limits import Decision


@dataclass
class Context:
    db: Database
    auth: Auth
    loaders: Loaders
    viewer: Viewer | None
    # The transport's request (Starlette's), for client address and headers.
    request: Any = None
    # Set while an operation runs: its computed cost, and the rate limiter's answer to it.
    operation_cost: int = 0
    rate_limit: Decision | None = None
    # The payment provider card payments go through; None when none is configured.
    acquiring: Acquiring | None = None

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
