"""Worker processes started by the harness: each in a session of its own, logging to a file."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import psutil
from adapters.base import BENCH_DIR


def worker_env(redis_url: str, extra: Sequence[tuple[str, str]] = ()) -> dict[str, str]:
    """The environment of a worker: the harness's own, less what would change how a library
    runs (the harness's ``BENCH_*`` switches; ``DJANGO_SETTINGS_MODULE``, which would turn on
    Celery's Django fix-ups; django-jobs' ``manage.py`` sets it for itself), plus ``extra``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("BENCH_") and name != "DJANGO_SETTINGS_MODULE"
    }
    env.update(
        BENCH_REDIS_URL=redis_url,
        PYTHONPATH=os.pathsep.join(filter(None, [str(BENCH_DIR), env.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class Workers:
    """The OS processes of one worker mode. ``stop()`` ends them and everything they started
    (each is the leader of its own process group)."""

    def __init__(self, commands: Sequence[Sequence[str]], env: dict[str, str], log: Path) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = log
        with log.open("wb") as out:
            self.processes = [
                subprocess.Popen(
                    list(command),
                    cwd=BENCH_DIR,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                for command in commands
            ]
        self.pids = [p.pid for p in self.processes]

    def exited(self) -> bool:
        return all(p.poll() is not None for p in self.processes)

    def failed(self) -> str | None:
        """Why a worker exited with an error, if one did."""
        for p in self.processes:
            if p.poll() not in (None, 0):
                return f"worker {p.args!r} exited with status {p.returncode}; see {self.log}"
        return None

    def tree(self) -> Iterator[psutil.Process]:
        """Its processes and everything they started, while they run."""
        for pid in self.pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                root = psutil.Process(pid)
                yield root
                yield from root.children(recursive=True)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) so far: of the processes the harness started
        (``"main"``, with their children that exited and were waited for) and of their
        children still running (``"children"``)."""
        usage = {"main": 0.0, "children": 0.0}
        for proc in self.tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                t = proc.cpu_times()
                total = t.user + t.system + t.children_user + t.children_system
                usage["main" if proc.pid in self.pids else "children"] += total
        return usage

    def wait(self, timeout: float) -> bool:
        """Wait until all exit by themselves; ``False`` if some still run after ``timeout``."""
        deadline = time.monotonic() + timeout
        for p in self.processes:
            try:
                p.wait(timeout=max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                return False
        return True

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM (a graceful stop in every library), then SIGKILL after ``grace`` seconds."""
        for p in self.processes:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
        if not self.wait(grace):
            for p in self.processes:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
            self.wait(5)
        # Children a worker left behind in its group (e.g. an orphaned process pool).
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
