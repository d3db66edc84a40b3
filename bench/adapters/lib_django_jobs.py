"""django-jobs: ``@job`` functions of ``bench/benchapp/jobs.py``, ``manage.py runworker``."""

from __future__ import annotations

import os
import statistics
import sys
from typing import Any, ClassVar

import django
import redis

from adapters.base import BENCH_DIR, Adapter, DrainMode, redis_url

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djsettings")
os.environ["BENCH_REDIS_URL"] = redis_url()
django.setup()

from benchapp.jobs import noop, stamp  # noqa: E402  (needs django.setup())

from django_jobs import JobHandle, JobQueue  # noqa: E402

NOOP = "benchapp.jobs.noop"


def runworker(*args: str) -> tuple[str, ...]:
    return (sys.executable, str(BENCH_DIR / "manage.py"), "runworker", *args)


class DjangoJobs(Adapter):
    name = "django-jobs"
    distributions = ("django-jobs", "django")
    setup_notes: ClassVar[str] = (
        "`noop.delay(i)` of a `@job` function; bulk: `JobQueue().enqueue_many()` of "
        "`build_jobs()`. Worker: `manage.py runworker --concurrency N --burst` (a supervisor "
        "and N child processes; default logging, one line per job start and finish, to a "
        "file). Results: stored by default (a key per job, kept a day). Default settings: "
        "the enqueuing process polls for each reply for up to 100 µs before it blocks "
        "(`REPLY_SPIN_MICROSECONDS`; the worker does not poll). Latency: "
        "`handle.result()`, which blocks on a notification list."
    )

    def __init__(self) -> None:
        self.jobs = JobQueue()

    def drain_modes(self, processes: int) -> list[DrainMode]:
        command = runworker("--concurrency", str(processes), "--burst")
        return [DrainMode(f"--concurrency {processes}", processes, (command,))]

    def idle_worker(self) -> DrainMode:
        return DrainMode("--concurrency 1", 1, (runworker("--concurrency", "1"),))

    def enqueue(self, i: int) -> None:
        noop.delay(i)

    def enqueue_bulk(self, start: int, count: int) -> None:
        """One round trip for ``count`` jobs: ``noop(start)`` ... ``noop(start + count - 1)``."""
        self.jobs.enqueue_many(
            self.jobs.build_jobs(NOOP, [[i] for i in range(start, start + count)])
        )

    def unfinished(self, probe: redis.Redis, n: int) -> int:
        return n - int(probe.zcard(self.jobs.keys.completed))

    def submit_stamp(self) -> JobHandle:
        return stamp.delay()

    def wait_stamp(self, handle: Any, timeout: float) -> float:
        return float(handle.result(timeout=timeout))

    def scale_worker(self, max_jobs: int) -> tuple[str, ...]:
        """One process, stopping after ``max_jobs`` jobs (or when the queue is empty)."""
        return runworker("--concurrency", "1", "--burst", "--max-jobs", str(max_jobs))

    def finish_times(self, probe: redis.Redis, since: float) -> list[float]:
        """When each job finished after ``since`` (epoch seconds), in order."""
        pairs = probe.zrange(
            self.jobs.keys.completed, f"({since}", "+inf", byscore=True, withscores=True
        )
        return sorted(score for _, score in pairs)

    def finished_record_bytes(self, probe: redis.Redis) -> float | None:
        """The median over 100 completed jobs of ``MEMORY USAGE`` of the record plus, when it
        has one, of its result's key."""
        ids = probe.zrange(self.jobs.keys.completed, 0, 99)
        sizes = []
        for raw in ids:
            job_id = raw.decode()
            size = probe.memory_usage(self.jobs.keys.job(job_id)) or 0
            sizes.append(size + (probe.memory_usage(self.jobs.keys.result(job_id)) or 0))
        return float(statistics.median(sizes)) if sizes else None


ADAPTER = DjangoJobs()
