"""The scheduler: enqueues each due run of the periodic tasks, once, however many run.

A :class:`JobScheduler` keeps its tasks in a *store*: :class:`MemoryTaskStore` for tasks
registered from code in one process, :class:`DatabaseTaskStore` for the ``ScheduledTask`` table
(``manage.py runscheduler``, the admin). Its loop sleeps until the next due time, waking every
second to see whether the tasks changed, and for each due time of a task:

1. builds the job (the task's job, args, kwargs, priority and queue; ``scheduled_at`` is the
   due time) and calls the store's ``fire`` script: it claims the tick with ``SET NX`` on
   ``{p}:tick:<task>:<due>`` and enqueues the job. Of many schedulers firing the same tick, one
   enqueues; the others learn the id of its job. Exactly-once per (task, due time) comes from
   this script alone: no leader election, no lock.
2. records ``last_run``, ``next_run`` and ``run_count`` in the store, with conditional updates:
   any scheduler that processed the tick may record it (so a winner that died before recording
   is covered), and recording the same tick twice counts it once.

Due times that fell while no scheduler ran follow the task's :class:`MissedRunPolicy`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from django.db import DatabaseError, connections

from django_jobs.conf import jobs_settings
from django_jobs.exceptions import StoreError
from django_jobs.job import Job, JobPriority
from django_jobs.queue import JobQueue
from django_jobs.registry import registry
from django_jobs.scheduling.due import DueRuns, due_runs
from django_jobs.scheduling.settings import tasks_from_settings
from django_jobs.scheduling.stores import MemoryTaskStore, TaskStore
from django_jobs.scheduling.task import ScheduledTask
from django_jobs.serialization import utcnow
from django_jobs.store import calls
from django_jobs.store.connection import Backoff
from django_jobs.store.execute import Plan, arun, run

logger = logging.getLogger("django_jobs.scheduler")

#: A due time found later than this (seconds) was missed: no scheduler was running then. Runs
#: found within it always run, so a scheduler that was busy or paused for a moment loses none.
MISSED_GRACE = 30.0
#: The loop wakes at least this often (seconds) to see whether the tasks changed (one Redis
#: GET), so that an edit in the admin takes effect within a second.
WAKE_EVERY = 0.5
#: The tasks are loaded again at least this often (seconds), even with no change reported: a
#: safety net for changes made without ``save()`` (``QuerySet.update()``, SQL) or while Redis
#: was down.
RELOAD_EVERY = 30.0
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


def _fire(jobs: JobQueue, task: str, due: datetime, job: Job, ttl: int) -> Plan[str]:
    return calls.fire(
        jobs.keys,
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


class JobScheduler:
    """Runs periodic tasks: register them, then :meth:`start` (a background thread) or
    :meth:`run` (blocking, until :meth:`stop`).

    ``store`` holds the tasks: a new :class:`MemoryTaskStore` by default, or a
    :class:`DatabaseTaskStore` for the ``ScheduledTask`` table. Tasks declared in
    ``DJANGO_JOBS['SCHEDULES']`` are written into it when the scheduler starts (``sync``).
    ``grace`` is :data:`MISSED_GRACE`.
    """

    def __init__(
        self,
        store: TaskStore | None = None,
        *,
        jobs: JobQueue | None = None,
        grace: float = MISSED_GRACE,
        scheduler_id: str | None = None,
        sync: bool = True,
    ) -> None:
        self.store: TaskStore = store if store is not None else MemoryTaskStore()
        self.jobs = jobs or JobQueue()
        self.grace = grace
        self.scheduler_id = scheduler_id or f"{socket.gethostname()}.{os.getpid()}"
        self._sync_settings = sync
        self._tasks: dict[str, ScheduledTask] = {}
        self._version: Any = None
        self._loaded_at = 0.0
        self._heartbeat_at = 0.0
        self._unknown_jobs: set[str] = set()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._running = False

    def __repr__(self) -> str:
        return f"<JobScheduler {self.scheduler_id} {'running' if self.running else 'stopped'}>"

    # -- tasks -------------------------------------------------------------------------------

    def register(self, task: ScheduledTask) -> ScheduledTask:
        """Add ``task`` (or change the task of its name). Its job must be registered."""
        if task.job_name not in registry:
            raise ValueError(
                f"Task {task.name!r}: no job named {task.job_name!r} is registered. "
                f"Registered jobs: {', '.join(registry.names()) or '(none)'}."
            )
        stored = self.store.add(task)
        self._wake.set()
        return stored

    def unregister(self, name: str) -> bool:
        """Remove the task ``name``; ``False`` if there is none."""
        found = self.store.remove(name)
        self._wake.set()
        return found

    def enable(self, name: str) -> bool:
        """Enable the task ``name``, computing its next run afresh; ``False`` if there is none."""
        return self._set_enabled(name, True)

    def disable(self, name: str) -> bool:
        """Stop running the task ``name`` (it is kept); ``False`` if there is none."""
        return self._set_enabled(name, False)

    def _set_enabled(self, name: str, enabled: bool) -> bool:
        found = self.store.set_enabled(name, enabled) is not None
        self._wake.set()
        return found

    def get_task(self, name: str) -> ScheduledTask | None:
        return self.store.get(name)

    def get_all_tasks(self) -> list[ScheduledTask]:
        return sorted(self.store.load(), key=lambda task: task.name)

    # -- running ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> bool:
        """Run the loop in a background thread. ``False`` (and nothing else happens) if this
        scheduler is running already."""
        with self._lock:
            if self._running:
                return False
            self._running = True
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run_thread, name=f"django-jobs scheduler {self.scheduler_id}"
            )
            self._thread.daemon = True
            self._thread.start()
            return True

    def _run_thread(self) -> None:
        try:
            self._loop()
        finally:
            connections.close_all()

    def run(self) -> None:
        """Run the loop in this thread until :meth:`stop` is called (e.g. by a signal handler).
        ``RuntimeError`` if this scheduler is running already."""
        with self._lock:
            if self._running:
                raise RuntimeError(f"{self!r} is running already.")
            self._running = True
            self._stop.clear()
        self._loop()

    def stop(self, timeout: float | None = None) -> None:
        """Ask the loop to stop after the task it is working on, and wait for its thread."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _loop(self) -> None:
        logger.info("scheduler %s started", self.scheduler_id)
        backoff = Backoff(limit=10.0)
        try:
            if self._sync_settings:
                self._until_it_works(self.sync_schedules)
            while not self._stop.is_set():
                try:
                    self._heartbeat()
                    self.run_pending()
                    backoff.reset()
                    wait = self._seconds_to_next_due()
                except (DatabaseError, StoreError) as exc:
                    wait = backoff.next()
                    logger.error("scheduler: %s; trying again in %.1fs", exc, wait)
                    _close_broken_connections()
                    self._version = None  # load again once it works
                except Exception:
                    wait = backoff.next()
                    logger.exception("scheduler: unexpected error; trying again in %.1fs", wait)
                    self._version = None
                self._wake.wait(wait)
                self._wake.clear()
        finally:
            self._signoff()
            self._running = False
            logger.info("scheduler %s stopped", self.scheduler_id)

    def _until_it_works(self, step: Callable[[], None]) -> None:
        backoff = Backoff(limit=10.0)
        while not self._stop.is_set():
            try:
                step()
                return
            except (DatabaseError, StoreError) as exc:
                pause = backoff.next()
                logger.error("scheduler: %s; trying again in %.1fs", exc, pause)
                _close_broken_connections()
                self._stop.wait(pause)

    def sync_schedules(self) -> None:
        """Write the tasks of ``DJANGO_JOBS['SCHEDULES']`` into the store (done at start)."""
        self.store.sync(tasks_from_settings())

    def _seconds_to_next_due(self) -> float:
        dues = [t.next_run for t in self._tasks.values() if t.enabled and t.next_run]
        if not dues:
            return WAKE_EVERY
        # A millisecond more, so as not to wake just before the due time and loop idle.
        wait = (min(dues) - utcnow()).total_seconds() + 0.001
        return min(max(wait, 0.0), WAKE_EVERY)

    def _heartbeat(self) -> None:
        if isinstance(self.store, MemoryTaskStore):
            return
        if time.monotonic() - self._heartbeat_at < HEARTBEAT_EVERY:
            return
        self._heartbeat_at = time.monotonic()
        now = time.time()
        run(
            calls.scheduler_beat(
                self.jobs.keys, scheduler_id=self.scheduler_id, now=now, forget_before=now - 86400
            )
        )

    def _signoff(self) -> None:
        if isinstance(self.store, MemoryTaskStore):
            return
        with contextlib.suppress(StoreError):
            run(calls.scheduler_gone(self.jobs.keys, scheduler_id=self.scheduler_id))

    def _reload_if_changed(self) -> None:
        version = self.store.version()
        stale = time.monotonic() - self._loaded_at > RELOAD_EVERY
        if self._version is None or version != self._version or stale:
            self._tasks = {task.name: task for task in self.store.load()}
            self._version = version
            self._loaded_at = time.monotonic()
            unknown = {t.name for t in self._tasks.values() if t.job_name not in registry}
            for name in sorted(unknown - self._unknown_jobs):
                logger.warning(
                    "task %s: no job named %s is registered in this process; its runs will fail",
                    name,
                    self._tasks[name].job_name,
                )
            self._unknown_jobs = unknown

    def run_pending(self, now: datetime | None = None) -> list[Fired]:
        """Enqueue what is due as of ``now`` (default: the current time), once; return it.

        The loop calls this after each wake-up; tests and ``runscheduler --once`` call it
        directly.
        """
        self._reload_if_changed()
        now = utcnow() if now is None else now
        done: list[Fired] = []
        for name in sorted(self._tasks):
            if self._stop.is_set():
                break
            task = self._tasks[name]
            if not task.enabled:
                continue
            try:
                if task.next_run is None:
                    next_run = task.calculate_next_run(now)
                    if next_run is None:
                        continue  # a one-time task that ran
                    stored = self.store.set_next_run(name, next_run)
                    if stored is None:
                        self._tasks.pop(name)
                        continue
                    task = self._tasks[name] = stored
                done += self._process(task, now)
            except (DatabaseError, StoreError):
                raise  # the whole pass waits for them
            except Exception:  # one task's trouble must not stop the others
                logger.exception("task %s: unexpected error; it is tried again later", name)
        return done

    def _process(self, task: ScheduledTask, now: datetime) -> list[Fired]:
        runs = due_runs(task, now, self.grace)
        if not runs.due:
            return []
        assert runs.first is not None
        if runs.dropped:
            logger.warning(
                "task %s: %d run(s) due from %s were missed (no scheduler was running); "
                "policy %s: %s",
                task.name,
                runs.missed,
                _local(task, runs.first),
                task.missed_run_policy.value,
                _what_happens(runs),
            )
        elif runs.missed:
            logger.warning(
                "task %s: %d run(s) due from %s were missed (no scheduler was running); "
                "policy %s: enqueueing %s",
                task.name,
                runs.missed,
                _local(task, runs.first),
                task.missed_run_policy.value,
                "them" if runs.missed > 1 else "it",
            )
        fired: list[Fired] = []
        try:
            for due in runs.fire:
                fired.append(self._fire(task, due))
        except (ValueError, TypeError) as exc:
            # The task cannot make a valid job (e.g. its queue was removed from QUEUES): its
            # runs are dropped, not retried every second.
            logger.error("task %s: cannot enqueue its job: %s", task.name, exc)
        self.store.record(task.name, task.next_run, [f.due for f in fired], runs.next_run)  # type: ignore[arg-type]
        new = [f.due for f in fired if task.last_run is None or f.due > task.last_run]
        self._tasks[task.name] = replace(
            task,
            next_run=runs.next_run,
            last_run=new[-1] if new else task.last_run,
            run_count=task.run_count + len(new),
        )
        return fired

    def _fire(self, task: ScheduledTask, due: datetime) -> Fired:
        # An unknown job is enqueued all the same (a worker with other code may know it; if
        # not, it fails with a reason): it was reported when the task was loaded.
        job_function = registry.get(task.job_name)
        priority = task.priority
        if priority is None:  # LOW is 0: no "or" here
            priority = job_function.priority if job_function else JobPriority.NORMAL
        job = self.jobs.build_job(
            task.job_name,
            task.args,
            task.kwargs,
            priority=priority,
            queue=task.queue or (job_function.queue if job_function else None),
            scheduled_at=due,
            max_retries=job_function.max_retries if job_function else None,
            timeout=job_function.timeout if job_function else None,
        )
        job_id = fire_tick(self.jobs, task.name, due, job, task.tick_ttl(due))
        enqueued = job_id == job.id
        if enqueued:
            logger.info(
                "task %s: enqueued job %s (%s) due %s",
                task.name,
                job_id,
                task.job_name,
                _local(task, due),
            )
        else:
            logger.debug(
                "task %s: the run due %s was enqueued by another scheduler (job %s)",
                task.name,
                _local(task, due),
                job_id,
            )
        return Fired(task.name, due, job_id, enqueued)


def _local(task: ScheduledTask, moment: datetime) -> str:
    return moment.astimezone(task.tzinfo).isoformat()


def _what_happens(runs: DueRuns) -> str:
    if not runs.fire:
        return f"skipping {runs.dropped}"
    return f"enqueueing {len(runs.fire)} (the latest), dropping {runs.dropped}"


def _close_broken_connections() -> None:
    """Drop this thread's database connections, so that the next query connects afresh."""
    for conn in connections.all(initialized_only=True):
        with contextlib.suppress(DatabaseError):
            conn.close()
