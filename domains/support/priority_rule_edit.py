"""Admins edit the priority rules: what each sets or raises, its narrowing, on or off.

A rule keeps its condition and position (the evaluation order); the table's checks hold
after every edit: exactly one of a set priority or a raise of 1 to 3 steps.
"""

from dataclasses import dataclass, replace

from sqlalchemy import bindparam, update

from domains.clock import SYSTEM_CLOCK, Clock
from domains.database import Database
from domains.errors import Forbidden, InvalidInput, NotFound
from domains.identity.models import Role
from domains.identity.viewer import Viewer
from domains.reads import row_columns, select_rows
from domains.support.models import RuleCondition, TicketCategory, TicketPriority
from domains.support.priority import PriorityRuleRow, rules
from domains.writes import Write, writer

MAX_DESCRIPTION = 200
MAX_RAISE = 3
MAX_WITHIN_DAYS = 365

_LOCK = Write(
    select_rows(PriorityRuleRow, rules).where(rules.c.id == bindparam("rule_id")).with_for_update(),
    PriorityRuleRow,
)
_SAVE = Write(
    update(rules)
    .where(rules.c.id == bindparam("rule_id"))
    .values(
        {
            name: bindparam(name)
            for name in (
                "description",
                "category",
                "within_days",
                "set_priority",
                "raise_steps",
                "enabled",
                "updated_at",
                "updated_by",
            )
        }
    )
    .returning(*row_columns(PriorityRuleRow, rules)),
    PriorityRuleRow,
)


class _Keep:
    """An argument not given: the rule keeps what it has."""


KEEP = _Keep()


@dataclass(frozen=True, slots=True)
class RuleChange:
    description: str | None = None
    enabled: bool | None = None
    # Setting a priority makes the rule a base one (no raise), and a raise clears it.
    set_priority: TicketPriority | None = None
    raise_steps: int | None = None
    within_days: int | None = None
    # None: the rule applies to every category (not for a category rule).
    category: TicketCategory | _Keep | None = KEEP


async def update_priority_rule(
    db: Database,
    viewer: Viewer,
    rule_id: int,
    change: RuleChange,
    *,
    clock: Clock = SYSTEM_CLOCK,
) -> PriorityRuleRow:
    if viewer.role is not Role.ADMIN:
        raise Forbidden("only admins edit the priority rules")
    now = clock.now()
    async with db.transaction() as session:
        found = await writer(session).fetch(_LOCK, rule_id=rule_id)
        if not found:
            raise NotFound("priority rule")
        rule = _changed(found[0], change)
        [saved] = await writer(session).fetch(
            _SAVE,
            rule_id=rule_id,
            description=rule.description,
            category=rule.category,
            within_days=rule.within_days,
            set_priority=rule.set_priority,
            raise_steps=rule.raise_steps,
            enabled=rule.enabled,
            updated_at=now,
            updated_by=viewer.user_id,
        )
    return saved


def _changed(rule: PriorityRuleRow, change: RuleChange) -> PriorityRuleRow:
    """The rule as edited, checked whole."""
    if change.set_priority is not None and change.raise_steps:
        raise InvalidInput("a rule sets a priority or raises it, not both")
    if change.description is not None:
        description = change.description.strip()
        if not 1 <= len(description) <= MAX_DESCRIPTION:
            raise InvalidInput(f"the description must be 1 to {MAX_DESCRIPTION} characters")
        rule = replace(rule, description=description)
    if change.enabled is not None:
        rule = replace(rule, enabled=change.enabled)
    if change.set_priority is not None:
        rule = replace(rule, set_priority=change.set_priority, raise_steps=0)
    if change.raise_steps is not None:
        if not 0 <= change.raise_steps <= MAX_RAISE:
            raise InvalidInput(f"raiseSteps must be between 0 and {MAX_RAISE}")
        if change.raise_steps:
            rule = replace(rule, set_priority=None, raise_steps=change.raise_steps)
        elif change.set_priority is None:
            raise InvalidInput("a rule without a raise sets a priority: give setPriority")
    if change.within_days is not None:
        if rule.condition is not RuleCondition.REPEAT_TICKET:
            raise InvalidInput("withinDays is for the repeat-ticket rule")
        if not 1 <= change.within_days <= MAX_WITHIN_DAYS:
            raise InvalidInput(f"withinDays must be between 1 and {MAX_WITHIN_DAYS}")
        rule = replace(rule, within_days=change.within_days)
    if not isinstance(change.category, _Keep):
        rule = replace(rule, category=change.category)
    if rule.condition is RuleCondition.CATEGORY and rule.category is None:
        raise InvalidInput("a category rule names its category")
    return rule
