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
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

from django.db import connections

from django_jobs import signals
from django_jobs.job import Job
from django_jobs.queue import JobQueue
from django_jobs.store.connection import Backoff
from django_jobs.worker.execute import (
    log_failed,
    log_finished,
    notify,
    notify_failed,
    report_given_back,
)
from django_jobs.worker.leases import Leases
from django_jobs.worker.retry import WAITED_OUT, auntil_redis_answers
from django_jobs.worker.slots import LEASED, Board, Running

logger = logging.getLogger("django_jobs.worker")
T = TypeVar("T")

# How often the outcome of a job whose process ended is tried when recording it fails other
# than by Redis not answering; after that the job's lease runs out and recovery takes it.
RECORD_ATTEMPTS = 5
# How many running jobs orphaned_jobs() looks through (those of dead processes come first: their
# leases are no longer renewed).
ORPHANS_LIMIT = 1000
ORPHANS_WAIT = 5.0
# A process that ends by itself sooner than this after it started failed at start.
QUICK_EXIT = 1.0


@dataclass(eq=False)
class Child:
    """The supervisor's view of one child."""

    worker_id: str
    board: Board
    process: BaseProcess | None = None
    conn: Connection | None = None
    idle: bool = False
    # It said it waits on the wake-up list itself (worker/wakeups.py): it takes no GO.
    waits: bool = False
    reported: asyncio.Event = field(default_factory=asyncio.Event)
    # Why the supervisor killed it, and the job that it killed it for (None: all its jobs).
    kill_reason: str | None = None
    killed_running: Running | None = None
    # Jobs whose lease renewal failed at the last check (stopped if it fails again), by id.
    suspects: dict[str, Running] = field(default_factory=dict)
    # Async jobs it was asked to stop: (slot, seq) -> (why, when, by time.time()).
    asked: dict[tuple[int, int], tuple[str, float]] = field(default_factory=dict)
    # When its process started, and the pauses before starting another after quick crashes.
    started: float = 0.0
    restarts: Backoff = field(default_factory=lambda: Backoff(limit=30.0))

    def restart_pause(self, code: int | None) -> float:
        """Seconds to wait before replacing a process that ended by itself with ``code``.

        One that failed within a second of starting (a broken import, a setting it cannot
        use) would fail again at once: its replacements are started after growing pauses, and
        logged, rather than in a loop that floods the log. 0 for any other end.
        """
        if code == 0 or time.monotonic() - self.started >= QUICK_EXIT:
            self.restarts.reset()
            return 0.0
        pause = self.restarts.next()
        logger.error(
            "worker %s: its process ended %.1fs after it started (exit code %s); starting "
            "another in %.1fs",
            self.worker_id,
            time.monotonic() - self.started,
            code,
            pause,
        )
        return pause


def lead_own_group(pid: int) -> None:
    """Make process ``pid`` the leader of a new process group.

    The child does the same as it starts (``child_process._become_child``); whichever comes second
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


def exit_records(
    reason: str | None, culprit: Running | None, published: list[Running]
) -> list[tuple[str, Running]]:
    """What to record for the jobs of a process that ended: (why, job) for each.

    ``reason`` is why the supervisor killed it (``None``: it ended by itself; "crash" when it
    still published jobs) and ``culprit`` the job it was killed for, if one; ``published`` are
    the jobs the process published when it ended. The culprit's attempt ends for ``reason``;
    the others of a process killed for one job's sake go back to their lists ("evicted"), and
    those of a crash or a shutdown share its reason. The jobs of a batch it had not started
    go back to the head of their lists ("unstarted"), whatever ended it.
    """
    if reason is None:
        return []
    records = [(reason, culprit)] if culprit is not None else []
    unstarted = []
    for running in published:
        if culprit is not None and (running.job_id, running.token) == (
            culprit.job_id,
            culprit.token,
        ):
            continue
        if running.mode == LEASED:
            unstarted.append(("unstarted", running))
        else:
            records.append((reason if culprit is None else "evicted", running))
    # Each goes to the head of its list: sent the last first, so that they keep their order.
    return records + unstarted[::-1]


async def exit_status(
    jobs: JobQueue, worker_id: str, unrecorded: set[str], burst: bool, lease: float
) -> int:
    """A worker's exit status: 0, or 1 when a --burst run leaves jobs of its own dead processes
    RUNNING. ``unrecorded`` are the jobs whose outcome it could not record (they are logged).

    Such a job runs again only after its lease expires and some worker recovers it: a script
    that runs ``runworker --burst`` until the queues are done must learn that they are not.
    """
    orphans = set(unrecorded)
    if burst:
        orphans |= await orphaned_jobs(jobs, worker_id)
    if not orphans:
        return 0
    logger.error(
        "worker %s: %d job(s) whose outcome it could not record are still RUNNING (%s): they "
        "run again only once their lease (LEASE_TIMEOUT, %ss) expires and a worker recovers them",
        worker_id,
        len(orphans),
        ", ".join(sorted(orphans)),
        lease,
    )
    return 1 if burst else 0


async def orphaned_jobs(jobs: JobQueue, worker_id: str) -> set[str]:
    """The jobs still RUNNING under the children of worker ``worker_id``.

    Called when it has no children left: whatever it finds, a process of it died with, and
    nothing recorded its outcome. A failure to look is logged, and finds nothing.
    """
    mine = f"{worker_id}:"
    try:
        async with asyncio.timeout(ORPHANS_WAIT):  # a frozen Redis must not hold up the exit
            running = await jobs.alist_jobs("running", limit=ORPHANS_LIMIT)
    except Exception:
        logger.exception("worker %s: could not list the running jobs", worker_id)
        return set()
    return {job.id for job in running if (job.worker_id or "").startswith(mine)}


async def record_exit(
    jobs: JobQueue,
    leases: Leases,
    reason: str,
    running: Running,
    code: int | None,
    until: asyncio.Event,
) -> bool:
    """Record the outcome of a job whose process was killed (``reason``) or crashed.

    Redis not answering is waited out until ``until`` is set (the worker is about to exit);
    anything else is logged with its traceback and tried again after a pause, a few times.
    Returns ``False`` when it gave up: the job stays RUNNING until its lease expires and a
    worker recovers it.
    """
    backoff = Backoff()
    for attempt in range(1, RECORD_ATTEMPTS + 1):
        try:
            await _record_exit(jobs, leases, reason, running, code, until)
            return True
        except WAITED_OUT:
            logger.error(
                "job %s: Redis did not answer in time to record that its process ended (%s); it "
                "stays RUNNING until its lease expires and a worker recovers it",
                running.job_id,
                reason,
            )
            return False
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
    jobs: JobQueue,
    leases: Leases,
    reason: str,
    running: Running,
    code: int | None,
    until: asyncio.Event,
) -> None:
    job = await auntil_redis_answers(functools.partial(jobs.aget_job, running.job_id), until=until)
    if job is None or job.lease_token != running.token:
        return  # finished or taken over meanwhile: nothing of ours to record
    await record_stop(jobs, leases, reason, job, time.time() - running.started, code, until)


def timeout_error(job: Job) -> str:
    """The error of an attempt stopped at its timeout."""
    return f"JobTimeout: the job ran longer than its timeout of {job.timeout}s and was stopped."


async def record_stop(
    jobs: JobQueue,
    leases: Leases,
    reason: str,
    job: Job,
    seconds: float,
    code: int | None = None,
    until: asyncio.Event | None = None,
) -> None:
    """Record the attempt of ``job`` (as it was leased) that was stopped for ``reason``:

    ``timeout`` and ``crash`` (``code``: the process's exit code) are failures, retried as any;
    ``cancel`` cancels it; ``shutdown`` (the worker stops) and ``evicted`` (its process was
    killed for another job's sake) give it back to the head of its list; ``lost`` (another
    worker has it) records nothing. Redis not answering is waited out until ``until`` is set.
    """

    def send(call: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> Awaitable[T]:
        return auntil_redis_answers(functools.partial(call, *args, **kwargs), until=until)

    if reason == "cancel":
        if await send(jobs.acancel_job, job.id, lease_token=job.lease_token) != "cancelled":
            return  # it finished meanwhile (with a status and signals of its own)
        log_finished(job, "cancelled", seconds)
        await in_thread(notify, signals.job_cancelled, job, seconds=seconds)
    elif reason == "unstarted":
        outcome = await send(leases.arelease_job, job)
        why = "leased in a batch but not started when its process ended"
        await in_thread(report_given_back, job, outcome, why)
    elif reason in ("shutdown", "evicted"):
        outcome = await send(leases.arelease_job, job)
        why = (
            "the worker is stopping"
            if reason == "shutdown"
            else "its process was stopped for another job that overran its timeout or would "
            "not stop"
        )
        await in_thread(report_given_back, job, outcome, why, seconds)
    elif reason == "lost":
        log_finished(job, "abandoned", seconds, "its lease was lost to another worker")
    else:
        error = (
            timeout_error(job)
            if reason == "timeout"
            else f"WorkerCrashed: the process running the job died (exit code {code})."
        )
        failed = await send(leases.arecord_failure, job, error, "", retry=True, finished=False)
        log_failed(job, failed, seconds, error)
        await in_thread(notify_failed, job, failed, seconds, error)


async def report_buried(jobs: JobQueue, ids: list[str]) -> None:
    """Log the jobs that lease recovery moved to the dead-letter queue (unreadable, or their
    worker was lost ``MAX_LOST`` times) and send ``job_dead`` for each, from this process.

    A record whose id cannot even be read as a job id is only logged."""
    for job_id in ids:
        logger.error("job %s: moved to dead letters (unreadable, or lost too often)", job_id)
        try:
            job = await jobs.aget_job(job_id)
        except Exception:
            logger.exception("job %s: could not read it to send job_dead", job_id)
            continue
        if job is not None:
            error = job.error or ""
            await in_thread(
                notify, signals.job_dead, job, error=error, traceback="", exception=None
            )


async def in_thread(call: Callable[..., object], *args: Any, **kwargs: Any) -> None:
    """``call(*args, **kwargs)`` (signal receivers) in a daemon thread of its own, awaited.

    Receivers are blocking code (a call to an error tracker, the ORM): on the supervisor's
    event loop they would hold up lease renewal and timeouts, and one that hangs must not hold
    up the worker's exit either. The thread's database connections are closed after it.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def finished() -> None:
        if not done.done():
            done.set_result(None)

    def target() -> None:
        try:
            call(*args, **kwargs)
        finally:
            with contextlib.suppress(Exception):
                connections.close_all()
            with contextlib.suppress(RuntimeError):  # the loop is closed: the worker exited
                loop.call_soon_threadsafe(finished)

    threading.Thread(target=target, name="django-jobs signals", daemon=True).start()
    await done
