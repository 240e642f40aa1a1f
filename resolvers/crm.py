"""CRM resolvers: a customer's timeline, for staff."""

from typing import Any

from strawberry import Info

from dataloaders.crm import TimelinePagesByCustomerIdLoader
from domains.crm.timeline import TIMELINE_ORDER, TimelineEntryRow
from domains.customers.customer import CustomerRow
from domains.errors import Forbidden
from domains.identity.user import UserRow
from domains.keyset import Page, Window
from resolvers.context import Context
from resolvers.identity import user_by_pk
from resolvers.lookup import lookup
from resolvers.relay import Connection, connection_from_page, window_from_arguments


def _timeline_page_key(root: CustomerRow, **window: Any) -> tuple[int, Window]:
    """`customer_timeline`'s arguments as its loader's key; `window`: first, after, ..."""
    return root.id, window_from_arguments(TIMELINE_ORDER, **window)


def _timeline_connection(
    page: Page[TimelineEntryRow], _root: CustomerRow, context: Context, **_: Any
) -> Connection[TimelineEntryRow]:
    # The operation's authorization refuses non-staff already; the timeline names staff
    # and internal references, so the field says so again on every path.
    if not context.signed_in.is_staff:
        raise Forbidden("only staff can read a customer's timeline")
    return connection_from_page(page, TIMELINE_ORDER)


@lookup(TimelinePagesByCustomerIdLoader, _timeline_page_key, _timeline_connection)
async def customer_timeline(
    root: CustomerRow,
    info: Info[Context],
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
) -> Connection[TimelineEntryRow]:
    """Newest first."""


async def entry_actor(root: TimelineEntryRow, info: Info[Context]) -> UserRow | None:
    return None if root.actor_id is None else await user_by_pk(info, root.actor_id)
