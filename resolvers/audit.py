"""Every Mutation root field of every domain, run inside the audit log's `staff_action`.

`audit_mutations` wraps the resolvers of a domain's Mutation type once, at import, so a
mutation added later (by any domain) is audited without anyone listing it."""

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
import strawberry
from strawberry import Info
from strawberry.utils.str_converters import to_camel_case

from domains.audit.log import staff_action
from domains.audit.reading import AUDIT_ORDER, AuditFilter, AuditRow, audit_page
from domains.errors import Forbidden
from domains.identity.models import Role
from domains.identity.user import UserRow
from resolvers.context import Context
from resolvers.identity import user_by_pk
from resolvers.relay import (
    Connection,
    connection_from_page,
    pk_of,
    to_global_id,
    window_from_arguments,
)

_AUDITED = "__kabinet_audited__"


def audit_mutations(mutation: type | None) -> None:
    if mutation is None:
        return
    for field in mutation.__strawberry_definition__.fields:  # type: ignore[attr-defined]
        resolver = field.base_resolver
        if resolver is None or getattr(resolver.wrapped_func, _AUDITED, False):
            continue
        resolver.wrapped_func = _audited(
            f"Mutation.{field.graphql_name or to_camel_case(field.python_name)}", resolver
        )


def _audited(operation: str, resolver: Any) -> Callable[..., Any]:
    func = resolver.wrapped_func
    info_name = resolver.info_parameter.name if resolver.info_parameter else None
    names = [argument.python_name for argument in resolver.arguments]

    @functools.wraps(func)
    async def audited(*args: Any, **kwargs: Any) -> Any:
        info: Info[Context] | None = kwargs.get(info_name) if info_name else None
        if info is None:
            return await func(*args, **kwargs)
        context = info.context
        headers = getattr(context.request, "headers", None) or {}
        async with staff_action(
            context.db,
            context.viewer,
            operation,
            {name: kwargs[name] for name in names if name in kwargs},
            client_address=context.client_ip,
            user_agent=headers.get("user-agent"),
            clock=context.clock,
        ):
            return await func(*args, **kwargs)

    setattr(audited, _AUDITED, True)
    return audited


async def audit_log(
    info: Info[Context],
    actor_id: strawberry.ID | None = None,
    operation: str | None = None,
    customer_id: strawberry.ID | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
) -> Connection[AuditRow]:
    """Newest first. Admins only: it names every staff member's doings and addresses."""
    if info.context.signed_in.role is not Role.ADMIN:
        raise Forbidden("only admins can read the audit log")
    filters = AuditFilter(
        actor_id=pk_of(actor_id, "User") if actor_id is not None else None,
        operation=operation,
        customer_id=pk_of(customer_id, "Customer") if customer_id is not None else None,
        since=since,
        until=until,
    )
    window = window_from_arguments(AUDIT_ORDER, first, after, last, before)
    async with info.context.db.read() as reader:
        page = await audit_page(reader, filters, window)
    return connection_from_page(page, AUDIT_ORDER)


async def entry_actor(root: AuditRow, info: Info[Context]) -> UserRow:
    return await user_by_pk(info, root.actor_id)


def entry_customer_id(root: AuditRow) -> str | None:
    return None if root.customer_id is None else to_global_id("Customer", root.customer_id)


def _json(value: Any) -> Any:
    """A JSON column as the declared read gives it: decoded on SQLite, text from the driver
    on PostgreSQL (the read pool's connections have no JSON codec)."""
    return orjson.loads(value) if isinstance(value, str) else value


def entry_arguments(root: AuditRow) -> Any:
    return _json(root.arguments)


def entry_changes(root: AuditRow) -> Any:
    return _json(root.changes)
