"""What the harness needs from each library: one adapter per library, all with this interface.

An adapter module is imported twice: by the harness (to enqueue and to read counters) and by
the library's own worker processes (to find the jobs), so it defines the library's app and the
two jobs at module level, configured from ``BENCH_REDIS_URL``:

- ``noop(i)`` returns ``i``: the job of the enqueue, drain and round-trip workloads;
- ``stamp()`` returns ``time.time()`` when it runs: the latency workload's start time.
"""

from __future__ import annotations

import os
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import redis

BENCH_DIR = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def redis_url(db: int = 0) -> str:
    """The private server's URL (set by the harness before it imports an adapter)."""
    url = os.environ.get("BENCH_REDIS_URL")
    if not url:
        raise RuntimeError("BENCH_REDIS_URL is not set: run the benchmark with bench/run.py.")
    return f"{url.rsplit('/', 1)[0]}/{db}"


def venv_command(name: str, *args: str) -> tuple[str, ...]:
    """A console script of the benchmark's virtualenv, with its arguments."""
    return (str(VENV_BIN / name), *args)


@dataclass(frozen=True)
class DrainMode:
    """One way of running a library's worker: the OS processes to start for it."""

    name: str  # e.g. "SimpleWorker", "solo"
    processes: int  # processes running jobs, one job at a time each
    commands: tuple[tuple[str, ...], ...]  # one command line per OS process the harness starts
    env: tuple[tuple[str, str], ...] = ()  # extra environment of those processes
    # The share of the configured drain size this mode runs (for a mode too slow for all).
    share: float = 1.0


class Adapter(ABC):
    """One library, driven through its normal API."""

    name: ClassVar[str]  # as shown in the tables
    distributions: ClassVar[tuple[str, ...]]  # whose versions the report records
    # The Redis database of :meth:`unfinished`'s counter (the harness polls it there).
    counter_db: ClassVar[int] = 0

    @abstractmethod
    def drain_modes(self, processes: int) -> list[DrainMode]:
        """The worker modes with ``processes`` processes, each one job at a time; the first
        one-process mode also serves the latency and round-trip workloads."""

    @abstractmethod
    def enqueue(self, i: int) -> None:
        """Enqueue ``noop(i)`` through the library's normal one-job API."""

    @abstractmethod
    def unfinished(self, probe: redis.Redis, n: int) -> int:
        """How many of the ``n`` enqueued jobs are not done yet: ONE cheap Redis command on
        ``probe`` (a client of :attr:`counter_db`), so that the harness can tell its own
        commands apart."""

    @abstractmethod
    def submit_stamp(self) -> Any:
        """Enqueue ``stamp()``; return what :meth:`wait_stamp` needs."""

    @abstractmethod
    def wait_stamp(self, handle: Any, timeout: float) -> float:
        """Wait for the job's result (the library's own way, or a tight poll where that
        sleeps for long) and return it: the time the job started."""

    def idle_worker(self) -> DrainMode:
        """The one-process worker of the latency workload: it must wait for jobs, not exit
        when the queue is empty (by default, the first one-process drain mode)."""
        return self.drain_modes(1)[0]

    def finished_record_bytes(self, probe: redis.Redis) -> float | None:
        """Redis bytes of one finished job's own keys (its record and its result), by
        ``MEMORY USAGE``, for libraries that keep one record per job; ``None`` otherwise."""
        return None

    #: How this library is set up, for the report (Markdown, one paragraph).
    setup_notes: ClassVar[str] = ""
