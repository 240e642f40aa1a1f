"""Every table, imported in one place so Alembic and tests see the whole metadata."""

from domains import outbox
from domains.analytics import models as analytics
from domains.base import Base
from domains.billing import models as billing
from domains.customers import models as customers
from domains.events import models as events
from domains.identity import models as identity

metadata = Base.metadata

__all__ = [
    "analytics",
    "billing",
    "customers",
    "events",
    "identity",
    "metadata",
    "outbox",
]
