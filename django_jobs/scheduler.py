"""The scheduler: enqueues each due run of the periodic tasks, once, however many run.

A :class:`JobScheduler` keeps its tasks in a *store*: :class:`MemoryTaskStore` for tasks
registered from code in one process, :class:`DatabaseTaskStore` for the ``ScheduledTask`` table
(``manage.py runscheduler``, the admin). Its loop sleeps until the next due time, waking every
second to see whether the tasks changed, and for each due time of a task:

1. builds the job (the task's job, args, kwargs, priority and queue; ``scheduled_at`` is the
   due time) and calls ``JobQueue.fire_tick``: one script claims the tick with ``SET NX`` on
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
from typing import Any, Protocol

import redis
from django.db import DatabaseError, IntegrityError, connections, transaction

from django_jobs import schedules
from django_jobs.connection import get_redis
from django_jobs.exceptions import RedisUnavailable
from django_jobs.job import JobPriority
from django_jobs.queue import JobQueue
from django_jobs.registry import registry
from django_jobs.schedules import ScheduledTask
from django_jobs.serialization import utcnow

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


class TaskStore(Protocol):
    """Where a scheduler's tasks live. Every method may be called from the scheduler's thread."""

    def load(self) -> list[ScheduledTask]:
        """All tasks, enabled or not. A task that cannot be read is left out (and logged)."""

    def version(self) -> Any:
        """A value that changes whenever a task is added, changed or removed (cheap to read)."""

    def get(self, name: str) -> ScheduledTask | None: ...

    def add(self, task: ScheduledTask) -> ScheduledTask:
        """Add ``task``, or replace the definition of the task of that name."""

    def remove(self, name: str) -> bool: ...

    def set_enabled(self, name: str, enabled: bool) -> ScheduledTask | None: ...

    def sync(self, declared: dict[str, ScheduledTask]) -> None:
        """Write the tasks declared in ``DJANGO_JOBS['SCHEDULES']`` into the store."""

    def set_next_run(self, name: str, next_run: datetime) -> ScheduledTask | None:
        """Set ``next_run`` of an enabled task that has none; return the task as stored."""

    def record(
        self, name: str, expected_next: datetime, fired: list[datetime], next_run: datetime | None
    ) -> None:
        """Record that the runs due at ``fired`` were enqueued and that the task's next run is
        ``next_run``. ``next_run`` is written only if the stored one is still
        ``expected_next``; runs not later than the stored ``last_run`` are not counted again.
        """


class MemoryTaskStore:
    """Tasks kept in this process, e.g. registered with :meth:`JobScheduler.register`.

    Several processes with the same tasks enqueue each tick once too, but an interval task's
    first run is at each process's own start: keep tasks in the database (``runscheduler``) for
    many processes.
    """

    def __init__(self) -> None:
        self._tasks: dict[str, ScheduledTask] = {}
        self._version = 0
        self._lock = threading.Lock()

    def _changed(self) -> None:
        self._version += 1

    def load(self) -> list[ScheduledTask]:
        with self._lock:
            return list(self._tasks.values())

    def version(self) -> int:
        return self._version

    def get(self, name: str) -> ScheduledTask | None:
        with self._lock:
            return self._tasks.get(name)

    def add(self, task: ScheduledTask) -> ScheduledTask:
        with self._lock:
            before = self._tasks.get(task.name)
            if before is not None:
                task = replace(
                    task,
                    last_run=before.last_run,
                    next_run=before.next_run,
                    run_count=before.run_count,
                )
            # A new task that comes with its next run (state restored from elsewhere) keeps it.
            if before is not None or task.next_run is None or not task.enabled:
                changed, next_run = schedules.rescheduled(task, before)
                if changed:
                    task = replace(task, next_run=next_run)
            self._tasks[task.name] = task
            self._changed()
            return task

    def remove(self, name: str) -> bool:
        with self._lock:
            found = self._tasks.pop(name, None) is not None
            self._changed()
            return found

    def set_enabled(self, name: str, enabled: bool) -> ScheduledTask | None:
        with self._lock:
            before = self._tasks.get(name)
            if before is None:
                return None
            task = replace(before, enabled=enabled)
            changed, next_run = schedules.rescheduled(task, before)
            if changed:
                task = replace(task, next_run=next_run)
            self._tasks[name] = task
            self._changed()
            return task

    def sync(self, declared: dict[str, ScheduledTask]) -> None:
        for name, task in declared.items():
            if self.get(name) is None:
                self.add(task)

    def set_next_run(self, name: str, next_run: datetime) -> ScheduledTask | None:
        with self._lock:
            task = self._tasks.get(name)
            if task is not None and task.enabled and task.next_run is None:
                task = self._tasks[name] = replace(task, next_run=next_run)
            return task

    def record(
        self, name: str, expected_next: datetime, fired: list[datetime], next_run: datetime | None
    ) -> None:
        with self._lock:
            task = self._tasks.get(name)
            if task is None:
                return
            new = [due for due in fired if task.last_run is None or due > task.last_run]
            if new:
                task = replace(task, last_run=new[-1], run_count=task.run_count + len(new))
            if task.next_run == expected_next:
                task = replace(task, next_run=next_run)
            self._tasks[name] = task


class DatabaseTaskStore:
    """The tasks of the ``ScheduledTask`` table (``django_jobs.models``).

    Changes made with ``save()`` or ``delete()`` (the admin, code) are reported through a
    counter in Redis that model signals bump; the scheduler reads it each time it wakes, at
    least every :data:`WAKE_EVERY` seconds.
    """

    def __init__(self, jobs: JobQueue | None = None) -> None:
        self.jobs = jobs or JobQueue()

    @property
    def model(self) -> Any:
        from django_jobs.models import ScheduledTask as Model

        return Model

    def _task(self, row: Any) -> ScheduledTask | None:
        try:
            return row.to_task()  # type: ignore[no-any-return]
        except schedules.InvalidSchedule as exc:
            logger.error("task %s is invalid and does not run: %s", row.name, exc)
            return None

    def load(self) -> list[ScheduledTask]:
        tasks = (self._task(row) for row in self.model.objects.all())
        return [task for task in tasks if task is not None]

    def version(self) -> Any:
        return get_redis().get(self.jobs.keys.schedules_version)

    def get(self, name: str) -> ScheduledTask | None:
        row = self.model.objects.filter(name=name).first()
        return None if row is None else self._task(row)

    def add(self, task: ScheduledTask) -> ScheduledTask:
        row = self.model.objects.filter(name=task.name).first() or self.model(name=task.name)
        row.set_definition(task)
        row.save()
        return row.to_task()  # type: ignore[no-any-return]

    def remove(self, name: str) -> bool:
        deleted, _ = self.model.objects.filter(name=name).delete()
        return bool(deleted)

    def set_enabled(self, name: str, enabled: bool) -> ScheduledTask | None:
        row = self.model.objects.filter(name=name).first()
        if row is None:
            return None
        row.enabled = enabled
        row.save()
        return self._task(row)

    def set_next_run(self, name: str, next_run: datetime) -> ScheduledTask | None:
        self.model.objects.filter(name=name, enabled=True, next_run__isnull=True).update(
            next_run=next_run
        )
        return self.get(name)

    def record(
        self, name: str, expected_next: datetime, fired: list[datetime], next_run: datetime | None
    ) -> None:
        from django.db.models import Case, F, Q, Value, When

        rows = self.model.objects.filter(name=name)
        if fired:
            # Count only the runs later than the stored last_run: recording twice counts once.
            new_runs = Case(
                *(
                    When(Q(last_run__isnull=True) | Q(last_run__lt=due), then=Value(len(fired) - i))
                    for i, due in enumerate(fired)
                ),
                default=Value(0),
            )
            rows.filter(Q(last_run__isnull=True) | Q(last_run__lt=fired[-1])).update(
                run_count=F("run_count") + new_runs, last_run=fired[-1]
            )
        rows.filter(next_run=expected_next).update(next_run=next_run)

    def sync(self, declared: dict[str, ScheduledTask]) -> None:
        """Write the declared tasks into the table, keeping what was changed in the admin.

        A new task is created. For an existing one each field takes the declared value unless
        it was changed in the admin since it was last written from the settings (then the
        admin's value stays, with a warning if the settings changed it too); ``enabled`` is
        only set when the task is created. Tasks that were declared and no longer are, are
        deleted. Several schedulers starting at once are fine.
        """
        for attempt in range(3):
            try:
                with transaction.atomic():
                    self._sync(declared)
                return
            except IntegrityError:  # Another scheduler created the same task just now.
                if attempt == 2:
                    raise

    def _sync(self, declared: dict[str, ScheduledTask]) -> None:
        from django.db.models import Q

        Model = self.model
        rows = {
            row.name: row
            for row in Model.objects.select_for_update().filter(
                Q(name__in=list(declared)) | Q(code_definition__isnull=False)
            )
        }
        for name, task in declared.items():
            wanted = task.definition()
            row = rows.get(name)
            if row is None:
                row = Model(name=name)
                row.set_definition(task)
                row.code_definition = wanted
                row.save()
                logger.info("task %s added from DJANGO_JOBS['SCHEDULES']", name)
                continue
            current = self._task(row)
            if current is None:  # Unreadable: the declaration replaces it.
                row.set_definition(task, enabled=False)
                row.code_definition = wanted
                row.save()
                continue
            have = current.definition()
            base = row.code_definition
            if base is None:  # Made in the admin: its fields count as changed there.
                logger.info(
                    "task %s (made in the admin) is now declared in DJANGO_JOBS['SCHEDULES']; "
                    "its fields stay as they are",
                    name,
                )
                base = wanted
            merged = dict(have)
            for key, value in wanted.items():
                before = base.get(key, have[key])
                if have[key] == before:  # not changed in the admin: the settings decide
                    merged[key] = value
                elif value != before and value != have[key]:
                    logger.warning(
                        "task %s: DJANGO_JOBS['SCHEDULES'] sets %s to %r, but it was changed "
                        "to %r in the admin; the admin's value stays",
                        name,
                        key,
                        value,
                        have[key],
                    )
            if merged == have and row.code_definition == wanted:
                continue
            try:
                task = _from_definition(current, merged)
            except schedules.InvalidSchedule as exc:
                logger.warning(
                    "task %s: the settings' changes do not fit the admin's (%s); the admin's "
                    "fields stay",
                    name,
                    exc,
                )
                task = current
            row.set_definition(task, enabled=False)
            row.code_definition = wanted
            row.save()
        for name, row in rows.items():
            if name not in declared and row.code_definition is not None:
                row.delete()
                logger.info("task %s deleted: it is no longer in DJANGO_JOBS['SCHEDULES']", name)


def _from_definition(task: ScheduledTask, definition: dict[str, Any]) -> ScheduledTask:
    run_at = definition["run_at"]
    return replace(
        task,
        description=definition["description"],
        job_name=definition["job_name"],
        schedule_type=definition["schedule_type"],
        interval_seconds=definition["interval_seconds"],
        run_immediately=definition["run_immediately"],
        cron_expression=definition["cron_expression"] or None,
        run_at=datetime.fromisoformat(run_at) if run_at else None,
        timezone=definition["timezone"],
        missed_run_policy=definition["missed_run_policy"],
        args=definition["args"],
        kwargs=definition["kwargs"],
        priority=definition["priority"],
        queue=definition["queue"],
    )


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
    from django_jobs.serialization import from_timestamp

    jobs = jobs or JobQueue()
    since = time.time() - HEARTBEAT_TIMEOUT
    seen = get_redis().zrangebyscore(jobs.keys.schedulers, since, "+inf", withscores=True)
    return {
        (name.decode() if isinstance(name, bytes) else name): from_timestamp(score)
        for name, score in seen
    }


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
        pause = 0.1
        try:
            if self._sync_settings:
                self._until_it_works(self.sync_schedules)
            while not self._stop.is_set():
                try:
                    self._heartbeat()
                    self.run_pending()
                    pause = 0.1
                    wait = self._seconds_to_next_due()
                except (DatabaseError, RedisUnavailable, redis.RedisError) as exc:
                    logger.error("scheduler: %s; trying again in %.1fs", exc, pause)
                    _close_broken_connections()
                    self._version = None  # load again once it works
                    wait, pause = pause, min(pause * 2, 10.0)
                except Exception:
                    logger.exception("scheduler: unexpected error; trying again in %.1fs", pause)
                    self._version = None
                    wait, pause = pause, min(pause * 2, 10.0)
                self._wake.wait(wait)
                self._wake.clear()
        finally:
            self._signoff()
            self._running = False
            logger.info("scheduler %s stopped", self.scheduler_id)

    def _until_it_works(self, step: Callable[[], None]) -> None:
        pause = 0.1
        while not self._stop.is_set():
            try:
                step()
                return
            except (DatabaseError, RedisUnavailable, redis.RedisError) as exc:
                logger.error("scheduler: %s; trying again in %.1fs", exc, pause)
                _close_broken_connections()
                self._stop.wait(pause)
                pause = min(pause * 2, 10.0)

    def sync_schedules(self) -> None:
        """Write the tasks of ``DJANGO_JOBS['SCHEDULES']`` into the store (done at start)."""
        self.store.sync(schedules.tasks_from_settings())

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
        with get_redis().pipeline(transaction=False) as pipe:
            pipe.zadd(self.jobs.keys.schedulers, {self.scheduler_id: now})
            pipe.zremrangebyscore(self.jobs.keys.schedulers, "-inf", now - 86400)
            pipe.execute()

    def _signoff(self) -> None:
        if isinstance(self.store, MemoryTaskStore):
            return
        with contextlib.suppress(RedisUnavailable, redis.RedisError):
            get_redis().zrem(self.jobs.keys.schedulers, self.scheduler_id)

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
            except (DatabaseError, RedisUnavailable, redis.RedisError):
                raise  # the whole pass waits for them
            except Exception:  # one task's trouble must not stop the others
                logger.exception("task %s: unexpected error; it is tried again later", name)
        return done

    def _process(self, task: ScheduledTask, now: datetime) -> list[Fired]:
        runs = schedules.due_runs(task, now, self.grace)
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
        job_id = self.jobs.fire_tick(task.name, due, job, task.tick_ttl(due))
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


def _what_happens(runs: schedules.DueRuns) -> str:
    if not runs.fire:
        return f"skipping {runs.dropped}"
    return f"enqueueing {len(runs.fire)} (the latest), dropping {runs.dropped}"


def _close_broken_connections() -> None:
    """Drop this thread's database connections, so that the next query connects afresh."""
    for conn in connections.all(initialized_only=True):
        with contextlib.suppress(DatabaseError):
            conn.close()
