"""Testing code that enqueues jobs, without a worker and without Redis.

Two modes, set by ``DJANGO_JOBS['MODE']`` (or switched on per test by :func:`immediate_jobs`,
:func:`capture_jobs` and the fixtures of :mod:`django_jobs.testing.pytest`):

- ``"immediate"``: every enqueue runs the job at once in the calling process, through the
  worker's own code (JSON round trip of arguments and result, retries, errors, signals), and
  what it enqueues after it; the handle answers from memory.
- ``"capture"``: enqueued jobs are recorded and not run; :func:`assert_enqueued` and
  :func:`assert_not_enqueued` check them, :func:`drain` runs them, :func:`advance` moves the
  clock that delays and retries wait on.

:func:`drain` works with Redis too: in ``"redis"`` mode it runs the jobs Redis holds under the
test's prefix, in the test's process, with the worker's own scripts. See docs/testing.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django_jobs.conf import jobs_settings
from django_jobs.job import Job
from django_jobs.testing import runner
from django_jobs.testing.modes import capture_jobs, immediate_jobs, jobs_mode
from django_jobs.testing.store import DRAIN_LIMIT, MemoryStore, current

__all__ = [
    "MemoryStore",
    "advance",
    "assert_enqueued",
    "assert_not_enqueued",
    "capture_jobs",
    "drain",
    "enqueued",
    "immediate_jobs",
    "jobs_mode",
    "memory_store",
]


def memory_store() -> MemoryStore:
    """The store of the testing mode that is on; ``RuntimeError`` in ``"redis"`` mode."""
    if jobs_settings.MODE == "redis":
        raise RuntimeError(
            "No testing mode is on: DJANGO_JOBS['MODE'] is 'redis', and enqueued jobs are in "
            "Redis. Switch one on with immediate_jobs() or capture_jobs() (or the jobs_capture "
            "and jobs_immediate fixtures of django_jobs.testing.pytest)."
        )
    return current()


def enqueued(job: Any = None, **filters: Any) -> list[Job]:
    """The jobs enqueued in this test that fit (all of them, without arguments), in order;
    see :meth:`MemoryStore.assert_enqueued` for the filters."""
    return memory_store().matching(job, **filters)


def assert_enqueued(job: Any = None, **filters: Any) -> list[Job]:
    """Fail unless a job of ``job`` (a ``@job`` function, a Django task or a name) that fits
    the filters was enqueued: ``args``, ``kwargs``, ``queue``, ``priority``, ``delay``,
    ``at``, ``user_id``, and ``count`` (exactly that many). Returns the jobs that fit."""
    return memory_store().assert_enqueued(job, **filters)


def assert_not_enqueued(job: Any = None, **filters: Any) -> None:
    """Fail if a job of ``job`` that fits the filters (as for :func:`assert_enqueued`) was
    enqueued; with no arguments, if any job was."""
    memory_store().assert_not_enqueued(job, **filters)


def advance(by: float | timedelta) -> None:
    """Move the testing mode's clock forward (``drain()`` then runs what fell due)."""
    memory_store().advance(by)


def drain(
    until: float | timedelta | datetime | None = None,
    *,
    queues: Iterable[str] | None = None,
    limit: int = DRAIN_LIMIT,
) -> int:
    """Run the jobs that are due, in this process, and those they enqueue, until none is left;
    return how many attempts ran.

    In a testing mode, the store's jobs; in ``"redis"`` mode, those Redis holds under
    ``DJANGO_JOBS['PREFIX']``, claimed and recorded with the worker's scripts. ``until``
    (seconds or a ``timedelta`` ahead, or an aware datetime) runs what falls due by then too:
    delayed jobs, and retries after their backoff; in a testing mode the clock moves there
    (``math.inf``: everything, however far ahead). ``queues`` limits it to those queues.
    """
    if jobs_settings.MODE == "redis":
        return runner.drain_redis(until, queues=queues, limit=limit)
    return current().drain(until, queues=queues, limit=limit)
