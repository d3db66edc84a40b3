"""Running jobs in the test's own process, the way a worker child runs them.

:func:`attempt` is one attempt as ``runworker`` makes it (:mod:`django_jobs.worker.child`):
``job_started``, the run itself (:func:`django_jobs.worker.execute.run_job`: the registered
function or Django task, its JSON checks, tracing), the outcome recorded, the log line, then
``job_succeeded`` or ``job_failed`` (and ``job_dead``). What records the outcome is the
in-memory store of the testing modes, or :class:`~django_jobs.worker.leases.Leases` for
:func:`drain_redis`, which runs what Redis holds through the worker's own lease protocol.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import time
from collections.abc import Coroutine, Iterable
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar, cast

from asgiref.sync import async_to_sync

from django_jobs import rules, signals, validation
from django_jobs.conf import jobs_settings
from django_jobs.job import Job
from django_jobs.serialization import utcnow
from django_jobs.worker.execute import (
    log_completed,
    log_failed,
    log_started,
    notify,
    notify_failed,
    run_job,
)
from django_jobs.worker.leases import Failure, Leases

T = TypeVar("T")


class Recorder(Protocol):
    """What records an attempt's outcome, and its progress: ``Leases``, or the in-memory
    store."""

    progress_interval: float

    def record_progress(self, job: Job, progress: str) -> bool: ...

    def complete_job(self, job: Job, result: Any = None) -> bool: ...

    def record_failure(
        self,
        job: Job,
        error: str,
        traceback: str = "",
        *,
        retry: bool = True,
        finished: bool = True,
    ) -> Failure: ...


class CallerThread:
    """Where an ``async def`` job runs in-process: as Django runs async code from sync code
    (``async_to_sync``), so that what the job hands to ``sync_to_async`` runs back in this
    thread, on its database connection (a ``TestCase``'s transaction among them). It stands
    for the ``asyncio.Runner`` of a worker child, whose ``run()`` is all ``run_job`` calls."""

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        async def main() -> T:
            return await coro

        return async_to_sync(main)()


def attempt(job: Job, recorder: Recorder) -> None:
    """Run one attempt of ``job`` (leased by ``recorder``) and record its outcome, as a worker
    child does: the same signals and log lines, in the same order."""
    log_started(job)
    notify(signals.job_started, job)
    started = time.monotonic()
    # The connections are the test's (maybe inside its transaction): the run leaves them be.
    outcome = run_job(
        job, cast(asyncio.Runner, CallerThread()), own_connections=False, recorder=recorder
    )
    seconds = time.monotonic() - started
    if not outcome.ok:
        failed = recorder.record_failure(job, outcome.error, outcome.traceback, retry=outcome.retry)
        report = (job, failed, seconds, outcome.error, outcome.traceback, outcome.exception)
        log_failed(*report)
        notify_failed(*report)
        return
    acked = recorder.complete_job(job, outcome.result)
    log_completed(job, seconds, acked)
    if acked:
        notify(signals.job_succeeded, job, result=outcome.result, seconds=seconds)


def drain_redis(
    until: float | timedelta | datetime | None = None,
    *,
    queues: Iterable[str] | None = None,
    limit: int,
) -> int:
    """Run the jobs that Redis holds under ``DJANGO_JOBS['PREFIX']`` in this process, one by
    one, until none is ready; return how many attempts ran.

    Each is claimed, run and acknowledged (or failed) with the worker's own scripts, so the
    records end as a worker would leave them. ``until`` (seconds or a ``timedelta`` from now,
    or an aware datetime) claims as if it were that time: delayed jobs and retries due by then
    run too. ``queues`` limits it to those queues.
    """
    served = validation.served_queues(queues)
    limit = rules.integer(limit, "limit", minimum=1)
    start = utcnow().timestamp()
    target = deadline(until, start)
    if not math.isfinite(target):
        raise ValueError(
            "drain(until=math.inf) runs everything in a testing mode only; with Redis, pass how "
            "far ahead to look (seconds, a timedelta or a datetime)."
        )
    shift = target - start
    leases = Leases()
    worker_id = f"{socket.gethostname()}:{os.getpid()}:drain"
    attempts = 0
    while True:
        options = leases.claim_options(worker_id)
        if shift > 0:
            # The claim script promotes what is due by "now", which the caller passes.
            now = utcnow().timestamp() + shift
            options.update(now=now, deadline=now + float(jobs_settings.LEASE_TIMEOUT))
        if attempts >= limit:
            raise RuntimeError(
                f"drain() ran {limit} attempts and Redis still has ready jobs: does a job "
                "enqueue itself again and again? Pass drain(limit=...) for more."
            )
        claim = leases.claim(served, worker_id, options=options)
        if claim.job is None:
            return attempts
        attempts += 1
        attempt(claim.job, leases)


def deadline(until: float | timedelta | datetime | None, now: float) -> float:
    """``drain(until=...)`` as epoch seconds, from ``now``: ``now`` itself for ``None``, that
    many seconds (or that ``timedelta``) later, an aware datetime's time, or ``math.inf``."""
    if until is None:
        return now
    if isinstance(until, float) and until == math.inf:
        return until
    if isinstance(until, datetime):
        if until.utcoffset() is None:
            raise ValueError(f"until {until.isoformat()} has no time zone; pass an aware one.")
        return until.timestamp()
    seconds = rules.seconds(until, "until")
    if seconds < 0:
        raise rules.refused("until", "0 seconds or more", until)
    return now + seconds
