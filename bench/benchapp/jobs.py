"""The benchmark's jobs for django-jobs (each peer's adapter defines the same two, and
``adapters/async_peers.py`` the async one), and the limited ones of ``bench/flow.py``."""

import asyncio
import time

from django_jobs import job


@job
def noop(i: int) -> int:
    return i


@job
def stamp() -> float:
    """Returns when it started: the latency workload's enqueue -> start."""
    return time.time()


@job
async def nap(seconds: float) -> float:
    """An async job that waits ``seconds`` on the event loop (bench/async_jobs.py)."""
    await asyncio.sleep(seconds)
    return seconds


@job
def count(results: list) -> int:
    """A group's callback (bench/workflows.py): how many results it received."""
    return len(results)


@job(rate_limit="1000000/s", concurrency=1000000)
def unhindered(i: int) -> int:
    """Limits that never hold it back: what their bookkeeping costs a job."""
    return i


@job(rate_limit="200/s")
def rated(i: int) -> int:
    """A rate limit that holds it back."""
    return i


@job(concurrency=1)
def serial(i: int) -> int:
    """One at a time across every worker."""
    return i
