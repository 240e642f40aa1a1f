"""Per-provider send rates: a channel that refuses to go faster than its provider allows.

Providers throttle (FCM's quota, an SMS gateway's messages per second, a mail relay's
connections): going past them earns 429s and, at some, a blocked account. The budget is
the one rate limiter's (domains/limits.py, GCRA: a token bucket by another name), keyed
by provider, so with Redis every worker shares it, and it reads the injected clock. A
message over the budget is not sent: it fails as temporary with the limiter's
`retry_after`, and the dispatcher takes it up again then.
"""

from datetime import timedelta

from domains.limits import Rate, RateLimiter
from domains.notifications.channel import Channel, OutgoingMessage, Sent, TemporaryFailure


class ThrottledChannel:
    def __init__(
        self, channel: Channel, *, provider: str, rate: Rate, limiter: RateLimiter
    ) -> None:
        self._channel = channel
        self._provider = provider
        self._rate = rate
        self._limiter = limiter
        self._key = f"notify-provider:{provider}"

    async def send(self, message: OutgoingMessage) -> Sent:
        decision = await self._limiter.acquire(self._key, self._rate)
        if not decision.allowed:
            raise TemporaryFailure(
                self._provider,
                "RATE_LIMITED",
                f"over {self._rate.limit} per {self._rate.period}",
                retry_after=timedelta(seconds=decision.retry_after),
            )
        return await self._channel.send(message)
