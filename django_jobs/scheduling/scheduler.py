"""The scheduler: enqueues each due run of the periodic tasks, once, however many run.

A :class:`JobScheduler` keeps its tasks in a *store*: :class:`MemoryTaskStore` for tasks
registered from code in one process, :class:`DatabaseTaskStore` for the ``ScheduledTask`` table
(``manage.py runscheduler``, the admin). Its loop sleeps until the next due time, waking every
second to see whether the tasks changed, and for each due time of a task:

1. builds the job (the task's job, args, kwargs, priority and queue; ``scheduled_at`` is the
   due time) and calls the store's ``fire`` script (for :data:`BATCH` tasks in one round trip):
   it claims the tick with ``SET NX`` on ``{p}:tick:<task>:<due>`` and enqueues the job. Of
   many schedulers firing the same tick, one enqueues; the others learn the id of its job.
   Exactly-once per (task, due time) comes from this script alone: no leader election, no lock.
2. records ``last_run``, ``next_run`` and ``run_count`` in the store (for those tasks at once),
   with conditional updates: any scheduler that processed the tick may record it (so a winner
   that died before recording is covered), and recording the same tick twice counts it once.

Due times that fell while no scheduler ran follow the task's :class:`MissedRunPolicy`, and so
do those that fell while this scheduler could not work (Redis or its database did not answer):
after such an outage only the runs due after its last failed attempt, or in the last
:data:`~.turns.AFTER_OUTAGE_GRACE` seconds, count as on time, not those of the last
:data:`MISSED_GRACE` seconds. One task's trouble (runs
that cannot be computed, a tick Redis refuses) marks that task broken and stops nothing else
(:mod:`~.turns`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from django.db import DatabaseError, connections

from django_jobs.exceptions import RedisUnavailable, StoreError
from django_jobs.queue import JobQueue
from django_jobs.registry import registry
from django_jobs.scheduling.changes import load_tasks
from django_jobs.scheduling.missed import Outage
from django_jobs.scheduling.settings import tasks_from_settings
from django_jobs.scheduling.stores import MemoryTaskStore, TaskStore
from django_jobs.scheduling.task import ScheduledTask
from django_jobs.scheduling.ticks import (
    HEARTBEAT_EVERY,
    HEARTBEAT_TIMEOUT,
    Fired,
    afire_tick,
    beat,
    fire_tick,
    report_failure,
    running_schedulers,
    sign_off,
)
from django_jobs.scheduling.timetable import Timetable
from django_jobs.scheduling.turns import TaskTurns
from django_jobs.serialization import utcnow
from django_jobs.store.connection import Backoff

# JobScheduler, and the names that lived here before scheduling/ticks.py (their import path).
__all__ = [
    "HEARTBEAT_EVERY",
    "HEARTBEAT_TIMEOUT",
    "Fired",
    "JobScheduler",
    "afire_tick",
    "fire_tick",
    "running_schedulers",
]

logger = logging.getLogger("django_jobs.scheduler")

#: A due time found later than this (seconds) was missed: no scheduler was running then. Runs
#: found within it always run, so a scheduler that was busy or paused for a moment loses none.
MISSED_GRACE = 30.0
#: The loop wakes at least this often (seconds) to see whether the tasks changed (one Redis
#: GET), so that an edit in the admin takes effect within a second.
WAKE_EVERY = 0.5
#: The tasks are loaded again at least this often (seconds), even with no change reported: a
#: safety net for databases without the schedules' version (see :mod:`~.changes`), where
#: changes made without ``save()`` (``QuerySet.update()``, SQL) or while Redis was down are
#: seen only then. Broken tasks are tried again then too (the only thing done then for a store
#: that sees every write: a reload costs O(tasks)).
RELOAD_EVERY = 30.0
#: A pass takes the due tasks this many at a time: their ticks fired in one round trip, their
#: runs recorded in one transaction. Bursts (cron tasks at a round minute) go fast, and an edit
#: made meanwhile waits for little.
BATCH = 100


class JobScheduler(TaskTurns):
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
        self._tasks: dict[str, ScheduledTask] = {}  # as this scheduler works with them
        self._loaded: dict[str, ScheduledTask] = {}  # as the store gave them (see load_tasks)
        self._skipped: set[str] = set()  # broken: skipped until the tasks are loaded again
        self._timetable = Timetable()
        self._version: Any = None
        self._loaded_at = 0.0
        self._read_at: datetime | None = None  # when the last load read the tasks
        self._heartbeat_at = 0.0
        self._unknown_jobs: set[str] = set()
        self._worked_at: datetime | None = None  # the start of the last pass that worked
        self._started_at: datetime | None = None  # when the loop started
        self._outage: Outage | None = None
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
        self._worked_at, self._outage = utcnow(), None
        self._started_at = self._worked_at
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
                    if isinstance(exc, RedisUnavailable):
                        # Tried as often as the loop wakes when all is well (one call; said
                        # once a minute): pauses growing to 10 s kept it from seeing Redis back
                        # for that long, and a run due then was lost if Redis went down again
                        # before the next attempt.
                        wait = min(wait, WAKE_EVERY)
                    # Redis refusing access (a password rotated, say) is waited out like an
                    # outage, with an error each time: it may be mended without a restart.
                    report_failure(exc, wait)
                    self._failed(exc)
                except Exception as exc:
                    wait = backoff.next()
                    logger.exception("scheduler: unexpected error; trying again in %.1fs", wait)
                    self._failed(exc)
                self._wake.wait(wait)
                self._wake.clear()
        finally:
            self._signoff()
            self._running = False
            logger.info("scheduler %s stopped", self.scheduler_id)

    def _failed(self, exc: BaseException) -> None:
        """A pass failed: the outage begins (if it had not), the tasks are loaded again once
        it works, and the database connections that broke are dropped."""
        now = utcnow()
        if self._outage is None:
            since = self._worked_at or now
            self._outage = Outage(since, Outage.cause_of(exc), time.monotonic(), now)
        else:  # the runs due before this attempt fell due in the outage (see turns.py)
            self._outage = replace(self._outage, failed=now)
        self._version = None
        _close_broken_connections()

    def _worked(self, began: datetime) -> None:
        """A pass that began at ``began`` worked to its end: any outage is over."""
        outage, self._outage, self._worked_at = self._outage, None, began
        if outage is not None:
            logger.warning(
                "scheduler %s: working again after %.1fs (%s); runs missed meanwhile follow "
                "each task's missed-run policy",
                self.scheduler_id,
                time.monotonic() - outage.began,
                outage.cause,
            )

    def _until_it_works(self, step: Callable[[], None]) -> None:
        backoff = Backoff(limit=10.0)
        while not self._stop.is_set():
            try:
                step()
                return
            except (DatabaseError, StoreError) as exc:
                pause = backoff.next()
                report_failure(exc, pause)
                self._failed(exc)
                self._stop.wait(pause)

    def sync_schedules(self) -> None:
        """Write the tasks of ``DJANGO_JOBS['SCHEDULES']`` into the store (done at start)."""
        self.store.sync(tasks_from_settings())

    def _seconds_to_next_due(self) -> float:
        first = self._timetable.next_due(self._tasks)
        if first is None:
            return WAKE_EVERY
        # A millisecond more, so as not to wake just before the due time and loop idle.
        wait = (first - utcnow()).total_seconds() + 0.001
        return min(max(wait, 0.0), WAKE_EVERY)

    def _heartbeat(self) -> None:
        if isinstance(self.store, MemoryTaskStore):
            return
        if time.monotonic() - self._heartbeat_at < HEARTBEAT_EVERY:
            return
        self._heartbeat_at = time.monotonic()
        beat(self.jobs, self.scheduler_id)

    def _signoff(self) -> None:
        if isinstance(self.store, MemoryTaskStore):
            return
        with contextlib.suppress(StoreError):
            sign_off(self.jobs, self.scheduler_id)

    def _reload_if_changed(self) -> None:
        version = self.store.version()
        if self._version is None or version != self._version:
            self._load(version)
        elif time.monotonic() - self._loaded_at > RELOAD_EVERY:
            if self.store.sees_every_write():
                self._retry_skipped()
            else:
                self._load(version)

    def _load(self, version: Any) -> None:
        read_at = utcnow()
        self._tasks, self._loaded = load_tasks(self.store, self._tasks, self._loaded, self._read_at)
        self._read_at = read_at
        self._timetable.rebuild(self._tasks.values())
        self._skipped.clear()
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

    def _retry_skipped(self) -> None:
        """Broken tasks are tried again, from now (marking them broken cleared their next run)."""
        for name in self._skipped & self._loaded.keys():
            task = self._tasks[name] = replace(self._loaded[name], next_run=None)
            self._timetable.put(task)
        self._skipped.clear()
        self._loaded_at = time.monotonic()

    def run_pending(self, now: datetime | None = None) -> list[Fired]:
        """Enqueue what is due as of ``now`` (default: the current time), once; return it.

        The loop calls this after each wake-up; tests and ``runscheduler --once`` call it
        directly. Only the tasks due by then (or without a next run yet) are looked at.
        """
        self._reload_if_changed()
        now = utcnow() if now is None else now
        done: list[Fired] = []
        left = deque(self._timetable.take_due(self._tasks, now))
        taken: list[str] = []
        try:
            while left and not self._stop.is_set():
                taken = [left.popleft() for _ in range(min(BATCH, len(left)))]
                done += self._turns(taken, now)
                taken = []
            if not left:  # a whole pass
                self._worked(now)
        finally:
            # Not taken their turn, or not recorded (the pass failed): still due. A run fired
            # again finds its tick taken (and its job) and is recorded then.
            for name in [*taken, *left]:
                if name in self._tasks:
                    self._timetable.put(self._tasks[name])
        return done


def _close_broken_connections() -> None:
    """Drop this thread's database connections, so that the next query connects afresh."""
    for conn in connections.all(initialized_only=True):
        with contextlib.suppress(DatabaseError):
            conn.close()
