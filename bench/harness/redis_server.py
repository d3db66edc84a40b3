"""A private, throw-away redis-server for one benchmark run.

It listens on a free port of 127.0.0.1, in a temporary directory, with persistence off, and is
the only server the harness ever flushes. It is shut down (and its directory removed) on exit.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """``with PrivateRedis() as server:`` starts one; ``server.url`` is where it listens."""

    def __init__(self, binary: str = "redis-server", port: int = 0) -> None:
        """``port``: where to listen; 0 (the default) for a free one."""
        found = shutil.which(binary)
        if found is None:
            raise SystemExit(
                f"{binary} not found: install Redis (e.g. apt-get install redis-server)."
            )
        self.binary = found
        self.dir = Path(tempfile.mkdtemp(prefix="django-jobs-bench-"))
        self.requested_port = port
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_dir(self) -> Path:
        return self.dir

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, single_connection_client=True)

    def start(self) -> None:
        for _ in range(5):  # another process may take the free port before the server does
            self.port = self.requested_port or _free_port()
            log = (self.dir / "redis.log").open("ab")
            options = {
                "bind": "127.0.0.1",
                "port": str(self.port),
                "save": "",
                "appendonly": "no",
                "dir": str(self.dir),
                "daemonize": "no",
                "protected-mode": "yes",
            }
            command = [self.binary]
            for name, value in options.items():
                command += [f"--{name}", value]
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()
            if self._wait_ready():
                return
            self._kill()
        raise RuntimeError(f"redis-server did not start; see {self.dir / 'redis.log'}")

    def _wait_ready(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with self.client() as client:
                    client.ping()
                return True
            except redis.ConnectionError:
                time.sleep(0.05)
        return False

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def flush(self) -> None:
        """Empty this private server (never any other)."""
        with self.client() as client:
            client.flushall()

    def info(self, *sections: str) -> dict[str, object]:
        with self.client() as client:
            return dict(client.info(*sections) if sections else client.info())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                with self.client() as client:
                    client.shutdown(nosave=True)
            except redis.RedisError:
                pass  # shutdown closes the connection: that is the expected outcome
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._kill()
        self.process = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PrivateRedis:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
