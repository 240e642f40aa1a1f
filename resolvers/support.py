"""Support resolvers: tickets and their threads, read as the viewer may."""

from typing import Any

import strawberry
from strawberry import Info

from dataloaders.support import (
    TicketMessagesLoader,
    TicketPagesByCustomerIdLoader,
    TicketsByIdLoader,
)
from domains.customers.contract import ContractRow
from domains.customers.customer import CustomerRow
from domains.keyset import Page, Window
from domains.support.thread import TicketMessageRow
from domains.support.ticket import TICKET_ORDER, TicketRow
from resolvers.access import load_owned
from resolvers.context import Context
from resolvers.customers import contract_by_pk, customer_by_pk
from resolvers.lookup import lookup
from resolvers.relay import Connection, connection_from_page, pk_of, window_from_arguments


async def ticket_by_pk(info: Info[Context], pk: int) -> TicketRow:
    """A customer's own ticket, or any for staff; else NOT_FOUND, so ids cannot be probed."""
    return await load_owned(info, info.context.loaders.of(TicketsByIdLoader), pk, "ticket")


async def ticket(info: Info[Context], id: strawberry.ID) -> TicketRow:
    return await ticket_by_pk(info, pk_of(id, "Ticket"))


def _ticket_page_key(root: CustomerRow, **window: Any) -> tuple[int, Window]:
    """`customer_tickets`' arguments as its loader's key; `window`: first, after, ..."""
    return root.id, window_from_arguments(TICKET_ORDER, **window)


def _ticket_connection(page: Page[TicketRow], *_: Any, **__: Any) -> Connection[TicketRow]:
    return connection_from_page(page, TICKET_ORDER)


@lookup(TicketPagesByCustomerIdLoader, _ticket_page_key, _ticket_connection)
async def customer_tickets(
    root: CustomerRow,
    info: Info[Context],
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
) -> Connection[TicketRow]:
    """Newest first."""


async def ticket_customer(root: TicketRow, info: Info[Context]) -> CustomerRow:
    return await customer_by_pk(info, root.customer_id)


async def ticket_contract(root: TicketRow, info: Info[Context]) -> ContractRow | None:
    if root.contract_id is None:
        return None
    return await contract_by_pk(info, root.contract_id)


async def ticket_messages(root: TicketRow, info: Info[Context]) -> list[TicketMessageRow]:
    """Oldest first; internal notes only for staff, who alone ask the loader for them."""
    staff = info.context.signed_in.is_staff
    return await info.context.loaders.of(TicketMessagesLoader).load((root.id, staff))


def ticket_sla_paused(root: TicketRow) -> bool:
    return root.sla_paused_at is not None
