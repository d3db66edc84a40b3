"""What schedulers keep in Redis: one key per enqueued run (its *tick*), and their heartbeats.

:func:`fire_run` builds the job of a task's run and fires its tick: of many schedulers firing
the same tick, one enqueues; the others learn the id of its job (:func:`fire_tick`);
:func:`fire_runs` fires many ticks in one round trip, each with its own outcome. A running
scheduler records that it is alive every few seconds, and :func:`running_schedulers` lists
those seen lately (the admin shows them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django_jobs.conf import jobs_settings
from django_jobs.exceptions import RedisUnavailable, StoreError
from django_jobs.job import Job
from django_jobs.queue import JobQueue
from django_jobs.scheduling.task import ScheduledTask
from django_jobs.serialization import utcnow
from django_jobs.store import calls
from django_jobs.store.batch import run_each
from django_jobs.store.commands import Plan
from django_jobs.store.connection import redis_outage
from django_jobs.store.execute import arun, run

logger = logging.getLogger("django_jobs.scheduler")

#: A running scheduler records that it is alive this often (seconds), and counts as running in
#: :func:`running_schedulers` for HEARTBEAT_TIMEOUT seconds after.
HEARTBEAT_EVERY = 5.0
HEARTBEAT_TIMEOUT = 15.0


@dataclass(frozen=True)
class Fired:
    """One due run a scheduler processed: ``enqueued`` if this scheduler enqueued ``job_id``,
    else another one had."""

    task: str
    due: datetime
    job_id: str
    enqueued: bool


def running_schedulers(jobs: JobQueue | None = None) -> dict[str, datetime]:
    """The schedulers seen in the last :data:`HEARTBEAT_TIMEOUT` seconds, with when."""

    jobs = jobs or JobQueue()
    since = time.time() - HEARTBEAT_TIMEOUT
    return run(calls.schedulers_seen(jobs.keys, since=since))


def beat(jobs: JobQueue, scheduler_id: str) -> None:
    """Record that scheduler ``scheduler_id`` is alive now; forget those gone for a day."""
    now = time.time()
    run(
        calls.scheduler_beat(
            jobs.keys, scheduler_id=scheduler_id, now=now, forget_before=now - 86400
        )
    )


def sign_off(jobs: JobQueue, scheduler_id: str) -> None:
    """Scheduler ``scheduler_id`` stopped: it no longer counts as running."""
    run(calls.scheduler_gone(jobs.keys, scheduler_id=scheduler_id))


def _fire(jobs: JobQueue, task: str, due: datetime, job: Job, ttl: int) -> Plan[str]:
    # The tick's key and the task's index of runs live on the shard of the job's queue: one
    # script claims the tick and enqueues the job, so they share the job's slot.
    return calls.fire(
        jobs.queue_keys(job.queue),
        task=task,
        due=due.timestamp(),
        job=job,
        ttl=ttl,
        now=utcnow().timestamp(),
        job_ttl=int(jobs_settings.JOB_TTL),
    )


def fire_tick(jobs: JobQueue, task: str, due: datetime, job: Job, ttl: int) -> str:
    """Enqueue ``job`` for the run of periodic task ``task`` due at ``due``, unless that run
    was enqueued before, by this scheduler or another: one script claims the tick (kept
    ``ttl`` seconds) and enqueues. Returns the id of the tick's job: ``job.id`` if this call
    enqueued it.
    """
    return run(_fire(jobs, task, due, job, ttl))


async def afire_tick(jobs: JobQueue, task: str, due: datetime, job: Job, ttl: int) -> str:
    return await arun(_fire(jobs, task, due, job, ttl))


def fire_run(jobs: JobQueue, task: ScheduledTask, due: datetime) -> Fired:
    """Enqueue the run of ``task`` due at ``due``, unless some scheduler did (:func:`fire_tick`).

    The job is :func:`tick_job`'s. The task's runs are indexed (:meth:`JobQueue.task_runs
    <django_jobs.queue.JobQueue.task_runs>`). ``ValueError`` or ``TypeError`` if the task
    cannot make a valid job; :class:`StoreError` if Redis refused the tick.
    """
    (fired,) = fire_runs(jobs, [(task, due, tick_job(jobs, task, due))])
    if isinstance(fired, StoreError):
        raise fired
    return fired


def tick_job(jobs: JobQueue, task: ScheduledTask, due: datetime) -> Job:
    """The job of the run of ``task`` due at ``due``: the task's job with its arguments and
    ``meta["scheduled_task"]``, the task's name; ``priority`` and ``queue`` ``None`` mean the
    job's own. ``ValueError`` or ``TypeError`` if the task cannot make a valid job."""
    # An unknown job is enqueued all the same (a worker with other code may know it; if
    # not, it fails with a reason): the scheduler reported it when it loaded the task.
    # JobQueue.build_job gives a registered job its own options where the task sets none.
    options: dict[str, object] = {}
    if task.priority is not None:  # LOW is 0: no truth test here
        options["priority"] = task.priority
    if task.queue:
        options["queue"] = task.queue
    # The job names its task (the admin links a run to its task; task_runs() the other way).
    meta = {"scheduled_task": task.name}
    return jobs.build_job(
        task.job_name, task.args, task.kwargs, scheduled_at=due, meta=meta, **options
    )


def fire_runs(
    jobs: JobQueue, runs: Sequence[tuple[ScheduledTask, datetime, Job]]
) -> list[Fired | StoreError]:
    """Fire the ticks of ``runs`` (a task, a due time, its :func:`tick_job`) as
    :func:`fire_tick` does, in one round trip (a scheduler's due ticks come in bursts: a
    round trip each held the last ones up).

    Each run's :class:`Fired`, or the :class:`StoreError` Redis answered its tick with (a key
    of the wrong type, named, with nothing written; a script error): the others are fired all
    the same. Redis not answering raises :class:`RedisUnavailable` for all (ticks fired
    meanwhile are found taken when fired again: nothing is enqueued twice).
    """
    plans = [_fire(jobs, task.name, due, job, task.tick_ttl(due)) for task, due, job in runs]
    return [
        job_id if isinstance(job_id, StoreError) else _fired(*run, job_id)
        for run, job_id in zip(runs, run_each(plans), strict=True)
    ]


def _fired(task: ScheduledTask, due: datetime, job: Job, job_id: str) -> Fired:
    enqueued = job_id == job.id
    if enqueued:
        logger.info(
            "task %s: enqueued job %s (%s) due %s",
            task.name,
            job_id,
            task.job_name,
            local_time(task, due),
        )
    else:
        logger.debug(
            "task %s: the run due %s was enqueued by another scheduler (job %s)",
            task.name,
            local_time(task, due),
            job_id,
        )
    return Fired(task.name, due, job_id, enqueued)


def report_failure(exc: Exception, pause: float) -> None:
    """A scheduler's pass failed for ``exc``; it tries again after ``pause`` seconds.

    Redis not answering is an outage of the process (:data:`redis_outage`): a line at first,
    then one a minute, and one when Redis answers again. Anything else (Redis refusing access,
    the database) is logged at each attempt: someone has to mend it.
    """
    if isinstance(exc, RedisUnavailable):
        redis_outage.failed(logger, exc, "scheduler: ")
    else:
        logger.error("scheduler: %s; trying again in %.1fs", exc, pause)


def local_time(task: ScheduledTask, moment: datetime) -> str:
    """``moment`` in the task's time zone, for the log."""
    return moment.astimezone(task.tzinfo).isoformat(timespec="seconds")
