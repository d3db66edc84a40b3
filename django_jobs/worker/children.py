"""The supervisor's side of its child processes: its view of each, how it ends one together with
whatever the job running in it started, and how it records the outcome of a job whose process
was killed or died.

Each child leads a process group of its own (the child sets it up as it starts, and so does the
supervisor right after the fork, so that there is no moment when a kill could miss it). A job's
own subprocesses inherit the group, so ending the group ends the whole job: a hard timeout, a
cancellation or the end of the shutdown grace leaves nothing of the job running.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TypeVar

from django_jobs.queue import JobQueue
from django_jobs.store.connection import Backoff
from django_jobs.worker.child import REDIS_ERRORS, Running, Slot, redis_pause
from django_jobs.worker.execute import failed_outcome, log_finished
from django_jobs.worker.leases import Leases

logger = logging.getLogger("django_jobs.worker")
T = TypeVar("T")

# How often the outcome of a job whose process ended is tried when recording it fails other
# than by Redis not answering; after that the job's lease runs out and recovery takes it.
RECORD_ATTEMPTS = 5
# How many running jobs orphaned_jobs() looks through (those of dead processes come first: their
# leases are no longer renewed).
ORPHANS_LIMIT = 1000


@dataclass(eq=False)
class Child:
    """The supervisor's view of one child."""

    worker_id: str
    slot: Slot
    process: BaseProcess | None = None
    conn: Connection | None = None
    idle: bool = False
    reported: asyncio.Event = field(default_factory=asyncio.Event)
    # Why the supervisor killed it, and the job it was running then.
    kill_reason: str | None = None
    killed_running: Running | None = None
    # A job whose lease renewal failed at the last check (killed if it fails again).
    suspect: Running | None = None


def lead_own_group(pid: int) -> None:
    """Make process ``pid`` the leader of a new process group.

    The child does the same as it starts (``child._become_child``); whichever comes second
    finds it done (or, for a spawned child that already started a new program, is refused),
    which is fine.
    """
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)


def kill_group(process: BaseProcess) -> None:
    """SIGKILL ``process`` and every process of its group (the subprocesses of its job).

    Call it before the process is reaped (joined): until then its pid, and so its group id,
    cannot belong to anyone else.
    """
    pid = process.pid
    if pid is None:
        return
    # ESRCH: the group is empty (or was never made); EPERM: a member changed its user id.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()


async def until_redis_answers(call: Callable[[], Awaitable[T]]) -> T:
    """``await call()``, called again after a pause while Redis does not answer."""
    backoff = Backoff()
    while True:
        try:
            return await call()
        except REDIS_ERRORS as exc:
            await asyncio.sleep(redis_pause(backoff, exc))


async def orphaned_jobs(jobs: JobQueue, worker_id: str) -> set[str]:
    """The jobs still RUNNING under the children of worker ``worker_id``.

    Called when it has no children left: whatever it finds, a process of it died with, and
    nothing recorded its outcome. A failure to look is logged, and finds nothing.
    """
    mine = f"{worker_id}:"
    try:
        running = await jobs.alist_jobs("running", limit=ORPHANS_LIMIT)
    except Exception:
        logger.exception("worker %s: could not list the running jobs", worker_id)
        return set()
    return {job.id for job in running if (job.worker_id or "").startswith(mine)}


async def record_exit(
    jobs: JobQueue, leases: Leases, reason: str, running: Running, code: int | None
) -> bool:
    """Record the outcome of a job whose process was killed (``reason``) or crashed.

    Redis not answering is waited out; anything else is logged with its traceback and tried
    again after a pause, a few times. Returns ``False`` when it gave up: the job stays RUNNING
    until its lease expires and a worker recovers it.
    """
    backoff = Backoff()
    for attempt in range(1, RECORD_ATTEMPTS + 1):
        try:
            await _record_exit(jobs, leases, reason, running, code)
            return True
        except Exception:
            if attempt == RECORD_ATTEMPTS:
                logger.exception(
                    "job %s: could not record that its process ended (%s); it stays RUNNING "
                    "until its lease expires and a worker recovers it",
                    running.job_id,
                    reason,
                )
                return False
            pause = backoff.next()
            logger.exception(
                "job %s: could not record that its process ended (%s); trying again in %.1fs",
                running.job_id,
                reason,
                pause,
            )
            await asyncio.sleep(pause)
    return False


async def _record_exit(
    jobs: JobQueue, leases: Leases, reason: str, running: Running, code: int | None
) -> None:
    job = await until_redis_answers(functools.partial(jobs.aget_job, running.job_id))
    if job is None or job.lease_token != running.token:
        return  # finished or taken over meanwhile: nothing of ours to record
    seconds = time.time() - running.started
    if reason == "cancel":
        await until_redis_answers(
            functools.partial(jobs.acancel_job, job.id, lease_token=running.token)
        )
        log_finished(job, "cancelled", seconds)
    elif reason == "shutdown":
        await until_redis_answers(functools.partial(leases.arelease_job, job))
        log_finished(
            job, "stopped", seconds, "the worker is stopping; back to the head of its queue"
        )
    elif reason == "lost":
        log_finished(job, "abandoned", seconds, "its lease was lost to another worker")
    else:
        error = (
            f"JobTimeout: the job ran longer than its timeout of {job.timeout}s and was stopped."
            if reason == "timeout"
            else f"WorkerCrashed: the process running the job died (exit code {code})."
        )
        status = await until_redis_answers(
            functools.partial(leases.afail_job, job, error, "", retry=True)
        )
        log_finished(job, failed_outcome(status), seconds, error)
