"""Ending sessions: this one (logout), one of one's devices, or all of them."""

import uuid

from domains.errors import NotFound, Unauthenticated
from domains.identity.auth import Auth
from domains.identity.viewer import Viewer


async def end_session(auth: Auth, viewer: Viewer, session_id: uuid.UUID | str) -> None:
    """Ends one of the viewer's live sessions; any other id reads as missing."""
    try:
        target = session_id if isinstance(session_id, uuid.UUID) else uuid.UUID(session_id)
    except ValueError:
        raise NotFound("session") from None
    async with auth.db.transaction() as tx:
        ended = await auth.sessions.revoke(tx, viewer.user_id, only=target)
    if not ended:
        raise NotFound("session")


async def logout(auth: Auth, viewer: Viewer) -> None:
    if viewer.session_id is None:
        raise Unauthenticated("this access token has no session")
    await end_session(auth, viewer, viewer.session_id)


async def logout_everywhere(auth: Auth, viewer: Viewer) -> int:
    """Ends every session of the viewer, this one included; returns how many ended."""
    async with auth.db.transaction() as tx:
        return await auth.sessions.revoke(tx, viewer.user_id)
