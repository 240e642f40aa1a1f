"""Identity loaders."""

from dataloaders.base import Loader
from domains.identity.user import UserRow, users_by_ids


class UsersByIdLoader(Loader[int, UserRow | None]):
    fetch = staticmethod(users_by_ids)
