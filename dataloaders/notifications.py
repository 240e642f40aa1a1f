"""Notification loaders: in-app inbox entries by id."""

from dataloaders.base import Loader
from domains.notifications.inbox import InboxRow, inbox_by_ids


class InboxEntriesByIdLoader(Loader[int, InboxRow | None]):
    fetch = staticmethod(inbox_by_ids)
