"""Ticket priorities in order, raising one by steps (capped at urgent), and the priority
rules admins keep as data, evaluated when a ticket is created."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from domains.reads import Read, Reader, any_of, select_rows
from domains.support.models import RuleCondition, TicketCategory, TicketPriority, TicketPriorityRule

rules = TicketPriorityRule.__table__

# Lowest first: a priority's index is its rank.
PRIORITIES: tuple[TicketPriority, ...] = (
    TicketPriority.LOW,
    TicketPriority.NORMAL,
    TicketPriority.HIGH,
    TicketPriority.URGENT,
)
RANK = {priority: rank for rank, priority in enumerate(PRIORITIES)}


def raised(priority: TicketPriority, steps: int) -> TicketPriority:
    """`priority` raised by `steps`, at most to urgent."""
    return PRIORITIES[min(RANK[priority] + steps, len(PRIORITIES) - 1)]


@dataclass(frozen=True, slots=True)
class PriorityRuleRow:
    id: int
    position: int
    description: str
    condition: RuleCondition
    category: TicketCategory | None
    within_days: int | None
    set_priority: TicketPriority | None
    raise_steps: int
    enabled: bool
    updated_at: datetime
    updated_by: int | None


RULES_IN_ORDER = Read(
    PriorityRuleRow,
    select_rows(PriorityRuleRow, rules).order_by(rules.c.position),
)


async def rules_in_order(reader: Reader) -> list[PriorityRuleRow]:
    """Every rule, enabled or not, in evaluation order (admins see them all)."""
    return await reader.fetch(RULES_IN_ORDER)


@dataclass(frozen=True, slots=True)
class CustomerFacts:
    """What the rules ask about the customer, read once when a ticket is created."""

    # A contract of theirs is suspended.
    suspended: bool
    # A tariff of one of their active contracts or subscriptions is for business.
    business: bool
    # When they last opened a ticket, by category (none: never).
    last_ticket_at: Mapping[TicketCategory, datetime]


@dataclass(frozen=True, slots=True)
class Evaluation:
    priority: TicketPriority
    # The last rule that changed the priority (None: no rule matched, the default stands).
    rule_id: int | None


# What a ticket gets when no base rule of its category is enabled.
DEFAULT_PRIORITY = TicketPriority.NORMAL


def evaluate(
    rules: Sequence[PriorityRuleRow],
    *,
    category: TicketCategory,
    facts: CustomerFacts,
    now: datetime,
) -> Evaluation:
    """The priority of a new ticket: the enabled rules in position order, each matching one
    either setting the priority or raising it some steps (capped at urgent). A rule's
    `category`, when set, narrows it to tickets of that category. The ticket records the
    last rule that changed its priority, so a raise that changed nothing (already urgent)
    leaves the rule before it on record."""
    priority, rule_id = DEFAULT_PRIORITY, None
    for rule in rules:
        if not rule.enabled or not _matches(rule, category, facts, now):
            continue
        if rule.set_priority is not None:
            changed = rule.set_priority
        else:
            changed = raised(priority, rule.raise_steps)
        if changed != priority or rule.set_priority is not None:
            priority, rule_id = changed, rule.id
    return Evaluation(priority, rule_id)


def _matches(
    rule: PriorityRuleRow, category: TicketCategory, facts: CustomerFacts, now: datetime
) -> bool:
    if rule.category is not None and rule.category != category:
        return False
    match rule.condition:
        case RuleCondition.CATEGORY:
            return rule.category is not None
        case RuleCondition.SERVICE_SUSPENDED:
            return facts.suspended
        case RuleCondition.NO_CONNECTION:
            # The customer reports no connection: that is the ticket's category.
            return category is TicketCategory.NO_CONNECTION
        case RuleCondition.BUSINESS_SEGMENT:
            return facts.business
        case RuleCondition.REPEAT_TICKET:
            # Another ticket of theirs (of the rule's category, if it names one) opened
            # within the rule's days.
            opened = [
                at
                for of_category, at in facts.last_ticket_at.items()
                if rule.category is None or of_category == rule.category
            ]
            days = timedelta(days=rule.within_days or 0)
            return any(now - at <= days for at in opened)
    return False


RULES_BY_ID = Read(
    PriorityRuleRow, select_rows(PriorityRuleRow, rules).where(any_of(rules.c.id, "ids"))
)


async def rules_by_ids(reader: Reader, ids: Sequence[int]) -> dict[int, PriorityRuleRow]:
    return {row.id: row for row in await reader.fetch(RULES_BY_ID, ids=ids)}
