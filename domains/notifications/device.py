"""Push devices: a token registered by its user, moved by re-registering, gone with the
user's sessions (logout everywhere, a password reset) or when the push service says so."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, delete
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from domains.database import Database
from domains.errors import InvalidInput, NotFound
from domains.notifications.channel import PushPlatform
from domains.notifications.models import PushDevice
from domains.reads import Read, Reader, select_rows

devices = PushDevice.__table__

MAX_TOKEN_LENGTH = 512
MAX_APP_ID_LENGTH = 255
MAX_LOCALE_LENGTH = 8


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """A device as its user sees it: never its token, which only the sender reads."""

    id: int
    user_id: int
    platform: PushPlatform
    app_id: str
    locale: str
    registered_at: datetime


@dataclass(frozen=True, slots=True)
class DeviceToken:
    id: int
    user_id: int
    platform: PushPlatform
    token: str
    app_id: str
    locale: str


DEVICES_BY_USER_ID = Read(
    DeviceRow,
    select_rows(DeviceRow, devices)
    .where(devices.c.user_id == bindparam("user_id"))
    .order_by(devices.c.id),
)
DEVICE_TOKENS_BY_USER_ID = Read(
    DeviceToken,
    select_rows(DeviceToken, devices)
    .where(devices.c.user_id == bindparam("user_id"))
    .order_by(devices.c.id),
)
DEVICE_TOKEN_BY_ID = Read(
    DeviceToken, select_rows(DeviceToken, devices).where(devices.c.id == bindparam("device_id"))
)


async def devices_of(reader: Reader, user_id: int) -> list[DeviceRow]:
    return await reader.fetch(DEVICES_BY_USER_ID, user_id=user_id)


async def register_device(
    db: Database,
    user_id: int,
    *,
    platform: PushPlatform,
    token: str,
    app_id: str,
    locale: str,
    now: datetime,
) -> DeviceRow:
    """Stores the token as this user's; a token another user had moves here (one phone,
    a new account signed in on it), so it is never pushed to its previous owner."""
    token, app_id, locale = token.strip(), app_id.strip(), locale.strip()
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidInput(f"token must be 1 to {MAX_TOKEN_LENGTH} characters")
    if not app_id or len(app_id) > MAX_APP_ID_LENGTH:
        raise InvalidInput(f"appId must be 1 to {MAX_APP_ID_LENGTH} characters")
    if not locale or len(locale) > MAX_LOCALE_LENGTH:
        raise InvalidInput(f"locale must be 1 to {MAX_LOCALE_LENGTH} characters")
    values = {
        "user_id": user_id,
        "platform": platform,
        "app_id": app_id,
        "locale": locale,
        "registered_at": now,
    }
    statement = (
        postgresql.insert(devices)
        .values(token=token, **values)
        .on_conflict_do_update(index_elements=[devices.c.token], set_=values)
        .returning(*(devices.c[name] for name in DeviceRow.__slots__))  # type: ignore[attr-defined]
    )
    async with db.transaction() as tx:
        row = (await tx.execute(statement)).one()
    return DeviceRow(*row)


async def unregister_device(db: Database, user_id: int, device_id: int) -> None:
    """Deletes one of the user's devices; another's reads as missing."""
    async with db.transaction() as tx:
        gone = await tx.execute(
            delete(devices).where(devices.c.id == device_id, devices.c.user_id == user_id)
        )
    if gone.rowcount != 1:  # type: ignore[attr-defined]
        raise NotFound("push device")


async def forget_user_devices(tx: AsyncSession, user_id: int, _now: datetime) -> None:
    """The user's last session ended (logoutEverywhere, a password reset, the last sign-out;
    `Domain.sessions_ended`, in that unit of work): their devices stop getting pushes at the
    same commit, and whoever holds the phone signs in again and registers it anew."""
    await tx.execute(delete(devices).where(devices.c.user_id == user_id))


async def forget_token(db: Database, device_id: int, token: str) -> None:
    """The push service said the token is dead: delete it, unless it was registered anew."""
    async with db.transaction() as tx:
        await tx.execute(delete(devices).where(devices.c.id == device_id, devices.c.token == token))
