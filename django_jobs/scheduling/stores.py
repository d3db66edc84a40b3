"""Where a :class:`~django_jobs.scheduling.scheduler.JobScheduler` keeps its periodic tasks.

:class:`MemoryTaskStore` holds tasks registered from code in one process;
:class:`DatabaseTaskStore` is the ``ScheduledTask`` table that ``manage.py runscheduler`` and
the admin use, and merges the tasks declared in ``DJANGO_JOBS["SCHEDULES"]`` into it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

from django.db import IntegrityError, transaction

from django_jobs.queue import JobQueue
from django_jobs.scheduling.due import rescheduled
from django_jobs.scheduling.errors import InvalidSchedule
from django_jobs.scheduling.task import ScheduledTask
from django_jobs.store import calls
from django_jobs.store.execute import run

logger = logging.getLogger("django_jobs.scheduling.scheduler")


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
                changed, next_run = rescheduled(task, before)
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
            changed, next_run = rescheduled(task, before)
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
        except InvalidSchedule as exc:
            logger.error("task %s is invalid and does not run: %s", row.name, exc)
            return None

    def load(self) -> list[ScheduledTask]:
        tasks = (self._task(row) for row in self.model.objects.all())
        return [task for task in tasks if task is not None]

    def version(self) -> Any:
        return run(calls.schedules_version(self.jobs.keys))

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
                task = ScheduledTask.from_definition(name, merged)
            except InvalidSchedule as exc:
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
