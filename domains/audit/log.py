"""Recording staff mutations: one audit row in the unit of work of the change it describes.

`staff_action` brackets one mutation (a GraphQL root field, a REST call) of a staff viewer.
While it runs, every unit of work opened (`Database.transaction`, told through
`domains.writes.UNIT_OF_WORK_OPENED`) captures the rows its statements change: before and
after of each UPDATE and DELETE (the rows its WHERE selects, read in the same transaction
before and after it runs), and the values of each INSERT. So any mutation, written today or
later, is recorded with its changes, whichever action it calls: nothing lists them. Just
before that unit of work commits, the audit row goes in with its `audit.recorded` event
(the CRM timeline's consumer reads it). A mutation that fails is recorded as REFUSED with
its error code in a transaction of its own, after its own rolled back: nothing else of it
is kept. A mutation whose actions wrote nothing (a repeated idempotent call) gets an OK row
of its own with no changes, so a success is never missing its record.
"""

import enum
import re
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Delete, Insert, Table, Update, event, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import ORMExecuteState

from domains.audit.models import AuditEntry
from domains.clock import SYSTEM_CLOCK, Clock
from domains.database import Database
from domains.errors import DomainError
from domains.events.subject import CUSTOMER, USER
from domains.identity.viewer import Viewer
from domains.outbox import record_event
from domains.reads import Declared
from domains.writes import (
    UNIT_OF_WORK_OPENED,
    WRITER,
    CoreWriter,
    RowsInsert,
    Write,
    Writer,
    after_commit,
    before_commit,
)

audit_log = AuditEntry.__table__

OK = "OK"
REFUSED = "REFUSED"
RECORDED = "audit.recorded"
REDACTED = "[redacted]"
# Argument names whose values never reach the log.
_SECRET = re.compile(r"password|secret|token|cvv|cvc|card_?number|pan\b|otp", re.IGNORECASE)
# Tables whose rows are the bookkeeping of a unit of work, not the object changed.
_NOT_CHANGES = frozenset({"audit_log", "outbox", "processed_events"})


@dataclass(slots=True)
class AuditScope:
    """One staff mutation in progress: who, from where, what; and whether a row is in."""

    viewer: Viewer
    operation: str
    arguments: dict[str, Any]
    client_address: str | None
    user_agent: str | None
    clock: Clock = SYSTEM_CLOCK
    recorded: bool = False
    changes: list[dict[str, Any]] = field(default_factory=list)


_SCOPE: ContextVar[AuditScope | None] = ContextVar("kabinet_audit_scope", default=None)


def redacted(value: Any, name: str = "") -> Any:
    """`value` as JSON, every secret-named field replaced: what may be kept forever."""
    if name and _SECRET.search(name):
        return REDACTED
    if isinstance(value, Mapping):
        return {str(key): redacted(item, str(key)) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redacted(item) for item in value]
    if hasattr(value, "__dataclass_fields__"):
        return {
            key: redacted(getattr(value, key), key)
            for key in value.__dataclass_fields__  # type: ignore[attr-defined]
        }
    if hasattr(value, "model_dump"):  # a REST body (pydantic)
        return redacted(value.model_dump(), name)
    return _plain(value)


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, bytes):
        return REDACTED
    return str(value)


@asynccontextmanager
async def staff_action(
    db: Database,
    viewer: Viewer | None,
    operation: str,
    arguments: Mapping[str, Any],
    *,
    client_address: str | None,
    user_agent: str | None,
    clock: Clock = SYSTEM_CLOCK,
) -> AsyncIterator[None]:
    """Records the block as `operation` of `viewer` when staff; customers' own mutations,
    and those of nobody signed in, are theirs (their events and the CRM timeline tell them)
    and are not audited."""
    if viewer is None or not viewer.is_staff or _SCOPE.get() is not None:
        yield
        return
    scope = AuditScope(
        viewer,
        operation,
        redacted(dict(arguments)),
        client_address,
        (user_agent or "")[:256] or None,
        clock,
    )
    token = _SCOPE.set(scope)
    opened = UNIT_OF_WORK_OPENED.set(_capture)
    try:
        yield
    except Exception as error:
        _SCOPE.reset(token)
        UNIT_OF_WORK_OPENED.reset(opened)
        code = error.code if isinstance(error, DomainError) else "INTERNAL_SERVER_ERROR"
        async with db.transaction() as tx:
            await _record(tx, scope, REFUSED, code, [])
        raise
    _SCOPE.reset(token)
    UNIT_OF_WORK_OPENED.reset(opened)
    if not scope.recorded:
        async with db.transaction() as tx:
            await _record(tx, scope, OK, None, [])


def _capture(tx: AsyncSession) -> None:
    """A unit of work opened under a staff mutation: its changes are captured and its audit
    row written before it commits (registered first, so its event joins the outbox's)."""
    scope = _SCOPE.get()
    if scope is None:
        return
    captured: list[dict[str, Any]] = []
    inner = tx.info[WRITER]
    if not isinstance(inner, CoreWriter):
        # PostgreSQL's writer sends on the driver's connection, past the session's
        # listener; SQLite's runs through the session, which the listener sees.
        tx.info[WRITER] = _CapturingWriter(inner, tx, captured)
    event.listen(tx.sync_session, "do_orm_execute", _orm_listener(captured))

    async def write(session: AsyncSession) -> None:
        if captured:
            await _record(session, scope, OK, None, captured)

    before_commit(tx, write)


async def _record(
    tx: AsyncSession,
    scope: AuditScope,
    outcome: str,
    error_code: str | None,
    changes: list[dict[str, Any]],
) -> None:
    viewer = scope.viewer
    customer_id = _customer_of(changes)
    values = {
        "recorded_at": scope.clock.now(),
        "actor_id": viewer.user_id,
        "actor_role": viewer.role.value,
        "session_id": viewer.session_id,
        "client_address": scope.client_address,
        "user_agent": scope.user_agent,
        "operation": scope.operation,
        "arguments": scope.arguments,
        "outcome": outcome,
        "error_code": error_code,
        "customer_id": customer_id,
        "changes": changes,
    }
    audit_id = (
        await tx.execute(insert(audit_log).values(values).returning(audit_log.c.id))
    ).scalar_one()
    if outcome != OK:
        # A refusal keeps its row and nothing else: no event, no timeline entry.
        return
    subject = CUSTOMER.of(customer_id) if customer_id is not None else USER.of(viewer.user_id)
    await record_event(
        tx,
        RECORDED,
        subject,
        {
            "version": 1,
            "audit_id": audit_id,
            "operation": scope.operation,
            "actor_id": viewer.user_id,
            "customer_id": customer_id,
            "tables": sorted({change["table"] for change in changes}),
        },
    )
    after_commit(tx, _marker(scope))


def _marker(scope: AuditScope) -> Any:
    def mark() -> None:
        scope.recorded = True

    return mark


def _customer_of(changes: Sequence[Mapping[str, Any]]) -> int | None:
    """The customer a change is about: a customers row's id, else a changed row's
    `customer_id`."""
    for change in changes:
        for row in (change.get("after"), change.get("before")):
            if not isinstance(row, Mapping):
                continue
            if change["table"] == "customers" and isinstance(row.get("id"), int):
                return row["id"]
            if isinstance(row.get("customer_id"), int):
                return row["customer_id"]
    return None


def _rows(result: Any) -> list[dict[str, Any]]:
    return [dict(row) for row in result.mappings()]


def _change(table: Table, op: str, before: Any, after: Any) -> list[dict[str, Any]]:
    """One entry per changed row, before and after paired by position (the same WHERE
    read twice, in the same order)."""
    befores = before if isinstance(before, list) else [before]
    afters = after if isinstance(after, list) else [after]
    count = max(len(befores), len(afters))
    befores = [_plain_row(row) for row in befores]
    afters = [_plain_row(row) for row in afters]
    entries = []
    for index in range(count):
        entries.append(
            {
                "table": table.name,
                "op": op,
                "before": befores[index] if index < len(befores) else None,
                "after": afters[index] if index < len(afters) else None,
            }
        )
    return entries


def _plain_row(row: Any) -> Any:
    if not isinstance(row, Mapping):
        return row
    return redacted({key: _plain(value) for key, value in row.items()})


def _same_rows(table: Table, where: Any, before: list[dict[str, Any]]) -> Any:
    """The rows the statement changed, read again: by their primary key when it is one
    column (an UPDATE may change what its WHERE tested), else by the same WHERE."""
    [*key] = table.primary_key.columns
    if len(key) != 1 or not before:
        return where
    return select(*table.c).where(key[0].in_([row[key[0].name] for row in before]))


def _table_of(statement: Any) -> Table | None:
    if isinstance(statement, (Update, Delete, Insert)):
        table = statement.table
        if isinstance(table, Table) and table.name not in _NOT_CHANGES:
            return table
    return None


def _orm_listener(captured: list[dict[str, Any]]) -> Any:
    """Statements run by `tx.execute`: the same capture, in the session's own greenlet."""

    def listener(state: ORMExecuteState) -> Any:
        statement = state.statement
        table = _table_of(statement)
        if table is None:
            return None
        params = state.parameters if isinstance(state.parameters, Mapping) else {}
        if isinstance(statement, Insert):
            result = state.invoke_statement()
            values = (
                [dict(p) for p in state.parameters]
                if isinstance(state.parameters, list)
                else {
                    **statement.compile().params,
                    **params,
                }
            )
            captured.extend(_change(table, "insert", None, redacted(values)))
            return result
        if statement.whereclause is None:
            return None
        again = select(*table.c).where(statement.whereclause)
        before = _rows(state.session.execute(again, params))
        result = state.invoke_statement()
        after = []
        if not isinstance(statement, Delete):
            after = _rows(state.session.execute(_same_rows(table, again, before), params))
        if before or after:
            captured.extend(_change(table, statement.__visit_name__, before, after))
        return result

    return listener


class _CapturingWriter:
    """A unit of work's Writer that notes, around each declared write, the rows it changes
    (read through the session, on the same connection and transaction)."""

    __slots__ = ("_captured", "_inner", "_tx")

    def __init__(self, inner: Writer, tx: AsyncSession, captured: list[dict[str, Any]]) -> None:
        self._inner = inner
        self._tx = tx
        self._captured = captured

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def fetch(self, statement: Declared[Any], /, **params: Any) -> list[Any]:
        if not isinstance(statement, Write):
            return await self._inner.fetch(statement, **params)
        return await self._around(statement, params, self._inner.fetch(statement, **params))

    async def execute(self, write: Write[Any], /, **params: Any) -> int:
        return await self._around(write, params, self._inner.execute(write, **params))

    async def insert(
        self, rows: RowsInsert[Any], values: Sequence[Mapping[str, Any]], /, **shared: Any
    ) -> list[Any]:
        written = await self._inner.insert(rows, values, **shared)
        if rows.table.name not in _NOT_CHANGES and values:
            after = [redacted({**row, **shared}) for row in values]
            self._captured.extend(_change(rows.table, "insert", None, after))
        return written

    async def _around(self, write: Write[Any], params: dict[str, Any], run: Any) -> Any:
        statement = write.statement
        table = _table_of(statement)
        if table is None:
            return await run
        if isinstance(statement, Insert):
            result = await run
            self._captured.extend(_change(table, "insert", None, redacted(params)))
            return result
        if statement.whereclause is None:
            return await run
        again = select(*table.c).where(statement.whereclause)
        before = _rows(await self._tx.execute(again, params))
        result = await run
        after = []
        if not isinstance(statement, Delete):
            after = _rows(await self._tx.execute(_same_rows(table, again, before), params))
        if before or after:
            self._captured.extend(_change(table, statement.__visit_name__, before, after))
        return result
