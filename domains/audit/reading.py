"""The admins' audit log: pages newest first, filtered by actor, operation, customer, time."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam

from domains.audit.models import AuditEntry
from domains.keyset import Ordering, Page, PageRead, Window
from domains.reads import Reader, select_rows

audit_log = AuditEntry.__table__


@dataclass(frozen=True, slots=True)
class AuditRow:
    id: int
    recorded_at: datetime
    actor_id: int
    actor_role: str
    session_id: uuid.UUID | None
    client_address: str | None
    user_agent: str | None
    operation: str
    arguments: Any
    outcome: str
    error_code: str | None
    customer_id: int | None
    changes: Any


AUDIT_ORDER = Ordering((audit_log.c.recorded_at, audit_log.c.id), descending=True)


@dataclass(frozen=True, slots=True)
class AuditFilter:
    actor_id: int | None = None
    operation: str | None = None
    customer_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None

    def shape(self) -> tuple[bool, ...]:
        return tuple(getattr(self, name) is not None for name in _FILTERS)

    def params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FILTERS if getattr(self, name) is not None}


_FILTERS = ("actor_id", "operation", "customer_id", "since", "until")


def _filtered(shape: tuple[bool, ...]) -> Select[Any]:
    """One statement per set of filters that apply; their values are parameters."""
    stmt = select_rows(AuditRow, audit_log)
    actor, operation, customer, since, until = shape
    if actor:
        stmt = stmt.where(audit_log.c.actor_id == bindparam("actor_id"))
    if operation:
        stmt = stmt.where(audit_log.c.operation == bindparam("operation"))
    if customer:
        stmt = stmt.where(audit_log.c.customer_id == bindparam("customer_id"))
    if since:
        stmt = stmt.where(audit_log.c.recorded_at >= bindparam("since"))
    if until:
        stmt = stmt.where(audit_log.c.recorded_at < bindparam("until"))
    return stmt


AUDIT_PAGES = PageRead(AuditRow, _filtered, AUDIT_ORDER)


async def audit_page(reader: Reader, filters: AuditFilter, window: Window) -> Page[AuditRow]:
    return await AUDIT_PAGES.page(reader, window, shape=filters.shape(), **filters.params())
