"""Support loaders: tickets, customers' ticket pages, ticket threads."""

from dataloaders.base import Loader, PageLoader
from domains.support.thread import TicketMessageRow, messages_by_ids, messages_by_ticket_ids
from domains.support.ticket import TicketRow, ticket_pages_by_customer_ids, tickets_by_ids


class TicketsByIdLoader(Loader[int, TicketRow | None]):
    fetch = staticmethod(tickets_by_ids)


class TicketPagesByCustomerIdLoader(PageLoader):
    """Key: (customer_id, Window)."""

    fetch = staticmethod(ticket_pages_by_customer_ids)


class TicketMessagesLoader(Loader[tuple[int, bool], list[TicketMessageRow]]):
    """Key: (ticket_id, with internal notes): only staff's keys say True."""

    fetch = staticmethod(messages_by_ticket_ids)


# Live updates: a message named by its event.


class TicketMessagesByIdLoader(Loader[int, TicketMessageRow | None]):
    fetch = staticmethod(messages_by_ids)
