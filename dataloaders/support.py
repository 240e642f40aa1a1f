"""Support loaders: tickets, customers' ticket pages, ticket threads, their assignments and
priority rules, operators and their skills."""

from dataloaders.base import Loader, PageLoader
from domains.support.assignment import TicketAssignmentRow, assignments_by_ticket_ids
from domains.support.models import TicketCategory
from domains.support.operator import skills_by_user_ids
from domains.support.priority import PriorityRuleRow, rules_by_ids
from domains.support.thread import TicketMessageRow, messages_by_ticket_ids
from domains.support.ticket import TicketRow, ticket_pages_by_customer_ids, tickets_by_ids


class TicketsByIdLoader(Loader[int, TicketRow | None]):
    fetch = staticmethod(tickets_by_ids)


class TicketPagesByCustomerIdLoader(PageLoader):
    """Key: (customer_id, Window)."""

    fetch = staticmethod(ticket_pages_by_customer_ids)


class TicketMessagesLoader(Loader[tuple[int, bool], list[TicketMessageRow]]):
    """Key: (ticket_id, with internal notes): only staff's keys say True."""

    fetch = staticmethod(messages_by_ticket_ids)


class OperatorSkillsByUserIdLoader(Loader[int, list[TicketCategory]]):
    fetch = staticmethod(skills_by_user_ids)


class AssignmentsByTicketIdLoader(Loader[int, list[TicketAssignmentRow]]):
    fetch = staticmethod(assignments_by_ticket_ids)


class PriorityRulesByIdLoader(Loader[int, PriorityRuleRow | None]):
    fetch = staticmethod(rules_by_ids)
