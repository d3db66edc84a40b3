"""What one run measures: which libraries and workloads, and how many jobs each."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

LIBRARIES = ("django-jobs", "rq", "celery", "huey", "dramatiq")
WORKLOADS = ("floor", "enqueue", "drain", "latency", "roundtrips", "scale")


@dataclass(frozen=True)
class Config:
    libraries: tuple[str, ...] = LIBRARIES
    workloads: tuple[str, ...] = WORKLOADS
    reps: int = 3
    # django-jobs' bulk enqueue: jobs, and jobs per round trip
    bulk_jobs: int = 100_000
    bulk_batch: int = 1_000
    # drain: jobs queued before the worker starts; worker processes (one job at a time each).
    # Each one-process drain's fill (jobs enqueued one by one) is a repetition of the enqueue
    # workload, which has as many jobs.
    drain_jobs: int = 20_000
    drain_jobs_2p: int = 10_000  # with more than one process (to keep a full run short)
    processes: tuple[int, ...] = (1, 2)
    # Modes left out (by "library:mode name" prefix), e.g. to save time.
    skip_modes: tuple[str, ...] = ()
    # latency: sequential jobs on an idle worker
    latency_jobs: int = 200
    # round trips: jobs enqueued then drained while MONITOR records every command
    roundtrip_jobs: int = 2_000
    # scale: django-jobs' drain rate with a small and a large backlog
    backlog_small: int = 1_000
    backlog_large: int = 1_000_000
    scale_reps: int = 5  # its runs are short (under a second each) and noisy
    # floor: single INCRs from one redis-py client
    floor_commands: int = 20_000
    # A drain during which other processes used more than this many cores is run again once.
    retry_busy: float = 0.5
    # The harness looks at a drain's progress this often (seconds).
    poll_interval: float = 0.01
    profile: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def drain_size(self, processes: int, share: float = 1.0) -> int:
        """Jobs queued before a drain's workers start."""
        n = self.drain_jobs if processes == 1 else self.drain_jobs_2p
        return max(1, round(n * share))


def quick(config: Config) -> Config:
    """About a quarter of the work: for checking a change, not for publishing."""
    return replace(
        config,
        bulk_jobs=20_000,
        drain_jobs=5_000,
        drain_jobs_2p=2_500,
        latency_jobs=100,
        roundtrip_jobs=500,
        backlog_large=100_000,
        floor_commands=5_000,
    )
