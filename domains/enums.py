"""Stored enumerations: VARCHAR with a CHECK on both databases, values in lower case."""

from enum import StrEnum

from sqlalchemy import Enum


def stored_enum(enum_cls: type[StrEnum], name: str) -> Enum:
    # A portable CHECK instead of a PostgreSQL ENUM type: adding a value is one migration line.
    return Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=max(16, *(len(member.value) for member in enum_cls)),
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )
