"""Every table, imported in one place so Alembic and tests see the whole metadata."""

from domains import outbox
from domains.base import Base
from domains.billing import models as billing
from domains.customers import models as customers
from domains.identity import models as identity

metadata = Base.metadata

__all__ = ["billing", "customers", "identity", "metadata", "outbox"]
