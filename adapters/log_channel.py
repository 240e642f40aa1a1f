"""A channel that prints what it would send: `make dev`'s email, SMS and push, so a
newcomer sees every notification with no mail server, gateway or device."""

import itertools
import logging

from domains.notifications.channel import OutgoingMessage, Sent

log = logging.getLogger("kabinet.notifications")


class LogChannel:
    def __init__(self, provider: str = "log") -> None:
        self._provider = provider
        self._ids = itertools.count(1)

    async def send(self, message: OutgoingMessage) -> Sent:
        message_id = f"{self._provider}-{next(self._ids)}"
        lines = [f"{message.channel} to {message.to} ({message_id}, {message.idempotency_key})"]
        if message.subject:
            lines.append(f"  subject: {message.subject}")
        lines.extend(f"  | {line}" for line in message.text.splitlines())
        if message.data:
            lines.append(f"  data: {dict(message.data)}")
        log.info("would send %s", "\n".join(lines))
        return Sent(self._provider, message_id)
