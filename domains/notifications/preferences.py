"""A user's notification preferences: categories per medium, locale, time zone, quiet hours.

No row means the default: everything on, Russian, Moscow time, quiet from 22:00 to 08:00.
Security messages ignore all of it (`allows`, `quiet_until`): a password-reset link is never
held back.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from sqlalchemy import bindparam
from sqlalchemy.dialects import postgresql

from domains.database import Database
from domains.errors import InvalidInput
from domains.notifications.models import (
    Category,
    Medium,
    NotificationPreference,
    NotificationSettings,
)
from domains.notifications.templates import DEFAULT_LOCALE, LOCALES
from domains.reads import Read, Reader, select_rows
from domains.writes import writer

settings_table = NotificationSettings.__table__
preferences_table = NotificationPreference.__table__

DEFAULT_TIME_ZONE = "Europe/Moscow"
DEFAULT_QUIET_HOURS = (time(22, 0), time(8, 0))
# Quiet hours hold back what would wake someone; email and the inbox wait quietly anyway.
QUIET_MEDIA = frozenset({Medium.SMS, Medium.PUSH})


@dataclass(frozen=True, slots=True)
class SettingsRow:
    user_id: int
    locale: str
    time_zone: str
    quiet_start: time | None
    quiet_end: time | None


@dataclass(frozen=True, slots=True)
class PreferenceRow:
    user_id: int
    category: Category
    medium: Medium
    enabled: bool


SETTINGS_BY_USER_ID = Read(
    SettingsRow,
    select_rows(SettingsRow, settings_table).where(
        settings_table.c.user_id == bindparam("user_id")
    ),
)
PREFERENCES_BY_USER_ID = Read(
    PreferenceRow,
    select_rows(PreferenceRow, preferences_table).where(
        preferences_table.c.user_id == bindparam("user_id")
    ),
)


@dataclass(frozen=True, slots=True)
class Preferences:
    locale: str = DEFAULT_LOCALE
    time_zone: str = DEFAULT_TIME_ZONE
    quiet_hours: tuple[time, time] | None = DEFAULT_QUIET_HOURS
    disabled: frozenset[tuple[Category, Medium]] = field(default_factory=frozenset)

    def allows(self, category: Category, medium: Medium) -> bool:
        return category is Category.SECURITY or (category, medium) not in self.disabled

    def quiet_until(self, category: Category, medium: Medium, now: datetime) -> datetime | None:
        """When quiet hours end, if `now` is in them for this message; else None."""
        if category is Category.SECURITY or medium not in QUIET_MEDIA or not self.quiet_hours:
            return None
        start, end = self.quiet_hours
        zone = ZoneInfo(self.time_zone)
        local = now.astimezone(zone)
        moment = local.time().replace(tzinfo=None)
        # Over midnight (22:00 to 08:00) when start is after end.
        quiet = start <= moment < end if start <= end else moment >= start or moment < end
        if not quiet:
            return None
        day = local.date() if moment < end else local.date() + timedelta(days=1)
        return datetime.combine(day, end, tzinfo=zone).astimezone(UTC)


async def preferences_of(reader: Reader, user_id: int) -> Preferences:
    found = await reader.fetch(SETTINGS_BY_USER_ID, user_id=user_id)
    rows = await reader.fetch(PREFERENCES_BY_USER_ID, user_id=user_id)
    disabled = frozenset((row.category, row.medium) for row in rows if not row.enabled)
    if not found:
        return Preferences(disabled=disabled)
    (settings,) = found
    quiet = (
        (settings.quiet_start, settings.quiet_end)
        if settings.quiet_start is not None and settings.quiet_end is not None
        else None
    )
    return Preferences(settings.locale, settings.time_zone, quiet, disabled)


@dataclass(frozen=True, slots=True)
class PreferenceChange:
    category: Category
    medium: Medium
    enabled: bool


_UNCHANGED = object()


async def update_preferences(
    db: Database,
    user_id: int,
    *,
    changes: Sequence[PreferenceChange] = (),
    locale: str | None = None,
    time_zone: str | None = None,
    quiet_hours: tuple[time, time] | object | None = _UNCHANGED,
) -> Preferences:
    """Applies what is given, all or nothing; `quiet_hours=None` turns them off."""
    for change in changes:
        if change.category is Category.SECURITY and not change.enabled:
            raise InvalidInput("security messages cannot be turned off")
    if locale is not None and locale not in LOCALES:
        raise InvalidInput(f"locale must be one of {', '.join(LOCALES)}")
    if time_zone is not None:
        try:
            ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInput(f"unknown time zone {time_zone[:64]!r}") from None
        if time_zone not in available_timezones():
            raise InvalidInput(f"unknown time zone {time_zone[:64]!r}")
    if isinstance(quiet_hours, tuple) and quiet_hours[0] == quiet_hours[1]:
        raise InvalidInput("quiet hours start and end at different times")
    async with db.transaction() as tx:
        current = await preferences_of(writer(tx), user_id)
        quiet = current.quiet_hours if quiet_hours is _UNCHANGED else quiet_hours
        values = {
            "locale": locale or current.locale,
            "time_zone": time_zone or current.time_zone,
            "quiet_start": quiet[0] if isinstance(quiet, tuple) else None,
            "quiet_end": quiet[1] if isinstance(quiet, tuple) else None,
        }
        await tx.execute(
            postgresql.insert(settings_table)
            .values(user_id=user_id, **values)
            .on_conflict_do_update(index_elements=[settings_table.c.user_id], set_=values)
        )
        for change in changes:
            await tx.execute(
                postgresql.insert(preferences_table)
                .values(
                    user_id=user_id,
                    category=change.category,
                    medium=change.medium,
                    enabled=change.enabled,
                )
                .on_conflict_do_update(
                    index_elements=[
                        preferences_table.c.user_id,
                        preferences_table.c.category,
                        preferences_table.c.medium,
                    ],
                    set_={"enabled": change.enabled},
                )
            )
        return await preferences_of(writer(tx), user_id)
