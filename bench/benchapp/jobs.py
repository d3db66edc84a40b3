"""The benchmark's jobs for django-jobs (each peer's adapter defines the same two)."""

import time

from django_jobs import job


@job
def noop(i: int) -> int:
    return i


@job
def stamp() -> float:
    """Returns when it started: the latency workload's enqueue -> start."""
    return time.time()
