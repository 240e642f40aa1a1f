"""No "Did you mean ...?" in production: suggestions would spell out the schema."""

from graphql import ValidationContext, ValidationRule


class HideSuggestionsRule(ValidationRule):
    """Drops "Did you mean ...?" from every validation message.

    graphql-core 3.3 omits suggestions when its ValidationContext has `hide_suggestions`
    (fields, arguments, types, enum values, input fields), but strawberry calls `validate`
    without that option. All rules of one validation share the context and are built
    before the walk, so setting it here covers every rule, in any order.
    """

    def __init__(self, context: ValidationContext) -> None:
        super().__init__(context)
        context._hide_suggestions = True  # the flag graphql-core's `validate` would set
