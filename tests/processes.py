"""Real ``manage.py`` processes for tests (workers, schedulers), and waiting for what they do."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Time-compressed settings for worker processes: short leases and backoff, never changed
# production defaults.
FAST = {"LEASE_TIMEOUT": 1, "RETRY_BACKOFF_BASE": 0.05, "RETRY_BACKOFF_MAX": 0.2}


def wait_until(predicate, timeout=15.0, interval=0.02, message="condition", ignore=()):
    """``predicate()``'s first true value, asked every ``interval`` seconds for ``timeout``
    seconds; an error of the kinds in ``ignore`` counts as false."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(*ignore):
            value = predicate()
            if value:
                return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


class Processes:
    """``manage.py`` commands in processes (and process groups) of their own, for one test.

    They get the test's key prefix (JOBS_TEST_PREFIX), settings (JOBS_TEST_SETTINGS), a folder
    for their logs and ledger (JOBS_TEST_LEDGER) and, for schedulers that share tasks through
    the database, a SQLite file (JOBS_TEST_DB). :meth:`close` kills whatever is left.
    """

    def __init__(
        self, folder: Path, prefix: str, settings: dict | None = None, db: str | None = None
    ) -> None:
        self.folder, self.prefix, self.db = folder, prefix, db
        self.settings = dict(settings or {})  # its own: tests change it
        self.procs: list[subprocess.Popen] = []
        folder.mkdir(parents=True, exist_ok=True)

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "JOBS_TEST_PREFIX": self.prefix,
            "JOBS_TEST_LEDGER": str(self.folder),
            "JOBS_TEST_SETTINGS": json.dumps(self.settings),
        }
        if self.db is not None:
            env["JOBS_TEST_DB"] = str(self.db)
        return env

    def start(self, *args: str, command: str = "runworker") -> subprocess.Popen:
        argv = [sys.executable, "-m", "django", command, *args]
        return self.spawn(argv, f"{command}-{len(self.procs)}.log")

    def spawn(self, argv: list[str], log_name: str) -> subprocess.Popen:
        """Start ``argv`` in a process group of its own, its output to ``log_name``."""
        log = (self.folder / log_name).open("w")
        proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc.log_path = Path(log.name)
        self.procs.append(proc)
        return proc

    def run(self, *args: str) -> subprocess.CompletedProcess:
        """Run a command to its end (``migrate``, ``runscheduler --once``)."""
        return subprocess.run(
            [sys.executable, "-m", "django", *args],
            cwd=REPO,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def stop(self, proc: subprocess.Popen, signum: int = signal.SIGTERM) -> int:
        proc.send_signal(signum)
        return proc.wait(timeout=30)

    def output(self, proc: subprocess.Popen) -> str:
        return proc.log_path.read_text()

    def logs(self) -> str:
        return "\n".join(f"--- {p.log_path.name}\n{self.output(p)}" for p in self.procs)

    def close(self) -> None:
        for proc in self.procs:
            # Children die with their supervisor; kill the group so that no orphan outlives it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
