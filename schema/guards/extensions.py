"""The limits as one schema's extensions, so every one holds before resolvers run."""

from functools import partial

from graphql import ValidationRule
from strawberry.extensions import AddValidationRules, MaxTokensLimiter

from schema.guards.cost import (
    DEFAULT_LIST_MULTIPLIER,
    DEFAULT_MAX_REPRESENTATIONS,
    ExtensionFactory,
    cost_limit,
)
from schema.guards.introspection import NoIntrospectionRule
from schema.guards.limits import (
    RepeatedDirectivesRule,
    max_aliases_rule,
    max_depth_rule,
    max_directives_rule,
)
from schema.guards.suggestions import HideSuggestionsRule
from schema.guards.text import NulFreeText


def hardening_extensions(
    *,
    max_depth: int,
    max_aliases: int,
    max_tokens: int,
    max_directives: int,
    max_cost: int,
    max_representations: int = DEFAULT_MAX_REPRESENTATIONS,
    introspection: bool,
    suggestions: bool,
    list_multiplier: int = DEFAULT_LIST_MULTIPLIER,
) -> list[ExtensionFactory]:
    """What to add after `standard_extensions()` so every limit holds before resolvers run."""
    rules: list[type[ValidationRule]] = [
        max_depth_rule(max_depth),
        max_aliases_rule(max_aliases),
        max_directives_rule(max_directives),
        RepeatedDirectivesRule,
    ]
    if not introspection:
        rules.append(NoIntrospectionRule)
    if not suggestions:
        rules.append(HideSuggestionsRule)
    return [
        partial(AddValidationRules, rules),
        partial(MaxTokensLimiter, max_token_count=max_tokens),
        NulFreeText,
        cost_limit(
            max_cost,
            max_representations=max_representations,
            list_multiplier=list_multiplier,
            suggestions=suggestions,
        ),
    ]
