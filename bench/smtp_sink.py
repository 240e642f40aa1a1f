"""The notification bench's SMTP server: aiosmtpd in a process of its own, counting.

    .venv/bin/python bench/smtp_sink.py      # prints its port, then a JSON line per SIGUSR1

Its own process, so receiving does not share the consumer's event loop (nor its core, when
the scheduler allows). It keeps no message, only what the bench checks: how many it took,
how many distinct `X-Kabinet-Notification` keys (a resent notification repeats its key),
and when the first and last arrived. On SIGUSR1 it prints those as one JSON line and starts
counting afresh (the next phase); SIGTERM ends it.
"""

import asyncio
import json
import re
import signal
import socket
import sys
import time

from aiosmtpd.smtp import SMTP, Envelope, Session

_KEY = re.compile(rb"^X-Kabinet-Notification: (\S+)\r?$", re.MULTILINE)


class Counter:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.received = 0
        self.keys: set[bytes] = set()
        self.keyless = 0
        self.first: float | None = None
        self.last: float | None = None
        self.sessions = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        now = time.time()
        if self.first is None:
            self.first = now
        self.last = now
        self.received += 1
        content = envelope.original_content or b""
        found = _KEY.search(content, 0, content.find(b"\r\n\r\n"))
        if found is None:
            self.keyless += 1
        else:
            self.keys.add(found.group(1))
        return "250 2.0.0 Ok: queued"

    def report(self) -> str:
        return json.dumps(
            {
                "received": self.received,
                "distinct": len(self.keys),
                "keyless": self.keyless,
                "first": self.first,
                "last": self.last,
                "sessions": self.sessions,
            }
        )


async def main() -> None:
    counter = Counter()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    loop = asyncio.get_running_loop()

    def session() -> SMTP:
        counter.sessions += 1
        return SMTP(counter, hostname="sink.bench", data_size_limit=None)

    server = await loop.create_server(session, sock=sock)
    done = asyncio.Event()

    def report() -> None:
        print(counter.report(), flush=True)
        counter.reset()

    loop.add_signal_handler(signal.SIGUSR1, report)
    loop.add_signal_handler(signal.SIGTERM, done.set)
    print(sock.getsockname()[1], flush=True)
    await done.wait()
    server.close()
    await server.wait_closed()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
