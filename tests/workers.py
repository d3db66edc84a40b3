"""Start real ``runworker`` processes for tests, and wait for what they do."""

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


def wait_until(predicate, timeout=10.0, interval=0.02, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


class Workers:
    """Starts worker processes in their own process groups and kills what is left at the end."""

    def __init__(self, prefix: str, ledger: Path, settings: dict) -> None:
        self.prefix = prefix
        self.ledger = ledger
        self.settings = settings
        self.procs: list[subprocess.Popen] = []

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "PYTHONPATH": str(REPO),
            "JOBS_TEST_PREFIX": self.prefix,
            "JOBS_TEST_LEDGER": str(self.ledger),
            "JOBS_TEST_SETTINGS": json.dumps(self.settings),
        }

    def start(self, *args: str, command: str = "runworker") -> subprocess.Popen:
        log = (self.ledger / f"{command}-{len(self.procs)}.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "django", command, *args],
            cwd=REPO,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc.log_path = Path(log.name)
        self.procs.append(proc)
        return proc

    def output(self, proc: subprocess.Popen) -> str:
        return proc.log_path.read_text()

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            # Children die with their supervisor; make sure no orphan outlives the test.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
