"""RabbitMQ for the tests: a fresh vhost per run on the machine's server, and a broker of
the tests' own for the restart tests (never the shared server at 5672, which others use).

The vhost is made with `rabbitmqctl` (the management plugin is not enabled everywhere);
where it cannot run the tests use the default vhost, and their fresh topic and group
names keep runs apart.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from tests.kafka import free_port

SHARED = "amqp://guest:guest@127.0.0.1:5672/"
SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
CTL = shutil.which("rabbitmqctl")


def _ctl(*args: str) -> bool:
    if CTL is None:
        return False
    try:
        done = subprocess.run(  # noqa: S603 - the server's own tool, fixed arguments
            [CTL, *args], capture_output=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def fresh_vhost() -> tuple[str, str | None]:
    """The URL of a new vhost on the shared server and its name, or the default vhost's
    URL and None when it cannot be made."""
    name = f"kabinet-test-{uuid.uuid4().hex[:8]}"
    if _ctl("add_vhost", name):
        if _ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*"):
            return f"{SHARED}{name}", name
        _ctl("delete_vhost", name)
    return SHARED, None


def drop_vhost(name: str | None) -> None:
    if name is not None:
        _ctl("delete_vhost", name)


class RabbitMQServer:
    """A RabbitMQ node of the test's own: its name, ports and data under `base`, so it can
    be stopped and started again and keeps its durable queues, as a real restart does."""

    def __init__(self, base: Path) -> None:
        self.port = free_port()
        self.dist_port = free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        self._base = base
        self._env = {
            **os.environ,
            "HOME": str(base),  # its own Erlang cookie
            "RABBITMQ_NODENAME": f"kabinet-test-{self.port}@localhost",
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
        }
        (base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        (base / "enabled_plugins").write_text("[].\n")
        self._process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return SERVER.exists()

    def start(self) -> None:
        with (self._base / "server.log").open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603 - the installed server
                [str(SERVER)],
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, stopped as one
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited: see {self._base}/server.log")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"rabbitmq-server did not listen on {self.port}")

    def stop(self) -> None:
        """Stops the node: the script and the Erlang VM it started, one process group."""
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGTERM)
        self._process.wait(timeout=60)
        self._process = None
