"""Where a :class:`~django_jobs.scheduling.scheduler.JobScheduler` keeps its periodic tasks:
the :class:`TaskStore` protocol, and :class:`MemoryTaskStore` for tasks registered from code in
one process. The ``ScheduledTask`` table is
:class:`~django_jobs.scheduling.database.DatabaseTaskStore`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from django_jobs.scheduling.due import rescheduled
from django_jobs.scheduling.task import ScheduledTask

logger = logging.getLogger("django_jobs.scheduler")


@dataclass(frozen=True)
class RunRecord:
    """What a scheduler records of a task after its turn: the runs due at ``fired`` (oldest
    first) were enqueued, by it or another scheduler, and the task's next run is ``next_run``.
    ``next_run`` is written only if the stored one is still ``expected_next``; runs not later
    than the stored ``last_run`` are not counted again."""

    name: str
    expected_next: datetime | None
    fired: tuple[datetime, ...]
    next_run: datetime | None


def counted(task: ScheduledTask, record: RunRecord) -> ScheduledTask:
    """``task`` with the runs of ``record`` later than its ``last_run`` counted."""
    new = [due for due in record.fired if task.last_run is None or due > task.last_run]
    if not new:
        return task
    return replace(task, last_run=new[-1], run_count=task.run_count + len(new))


class TaskStore(Protocol):
    """Where a scheduler's tasks live. Every method may be called from the scheduler's thread."""

    def load(self) -> list[ScheduledTask]:
        """All tasks, enabled or not. A task that cannot be read is left out (and logged).

        A task that did not change since the last call is given as the same object (the
        scheduler then looks only at those that did)."""

    def version(self) -> Any:
        """A value that changes whenever a task is added, changed or removed (cheap to read:
        the scheduler reads it every time it wakes)."""

    def sees_every_write(self) -> bool:
        """Whether :meth:`version` changes with every write, whoever makes it (else the
        scheduler loads the tasks again every ``RELOAD_EVERY`` seconds too)."""

    def get(self, name: str) -> ScheduledTask | None: ...

    def add(self, task: ScheduledTask) -> ScheduledTask:
        """Add ``task``, or replace the definition of the task of that name."""

    def remove(self, name: str) -> bool: ...

    def set_enabled(self, name: str, enabled: bool) -> ScheduledTask | None: ...

    def sync(self, declared: dict[str, ScheduledTask]) -> None:
        """Write the tasks declared in ``DJANGO_JOBS['SCHEDULES']`` into the store."""

    def set_next_run(self, name: str, next_run: datetime) -> ScheduledTask | None:
        """Set ``next_run`` of an enabled task that has none; return the task as stored."""

    def record(self, records: Sequence[RunRecord]) -> None:
        """Record the turns of ``records`` (see :class:`RunRecord`), all or none."""

    def forget_next_run(self, name: str, expected_next: datetime | None) -> None:
        """Clear the task's ``next_run`` if it is still ``expected_next``: it is computed afresh,
        from now (a write that bypassed ``save()`` disabled, enabled or rescheduled the task)."""

    def mark_broken(self, name: str, reason: str) -> bool:
        """The task's next run cannot be computed, for ``reason``: mark it broken, without a
        next run. ``True`` if it was not broken for that reason already (then say so, once)."""

    def mark_sound(self, name: str) -> None:
        """The task's next run can be computed again: it is no longer broken."""


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

    def sees_every_write(self) -> bool:
        return True

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

    def record(self, records: Sequence[RunRecord]) -> None:
        with self._lock:
            for record in records:
                task = self._tasks.get(record.name)
                if task is None:
                    continue
                task = counted(task, record)
                if task.next_run == record.expected_next:
                    task = replace(task, next_run=record.next_run)
                self._tasks[record.name] = task

    def forget_next_run(self, name: str, expected_next: datetime | None) -> None:
        with self._lock:
            task = self._tasks.get(name)
            if task is not None and task.next_run == expected_next:
                self._tasks[name] = replace(task, next_run=None)

    def mark_broken(self, name: str, reason: str) -> bool:
        with self._lock:
            task = self._tasks.get(name)
            if task is None:
                return False
            self._tasks[name] = replace(task, next_run=None, broken_reason=reason)
            return task.broken_reason != reason

    def mark_sound(self, name: str) -> None:
        with self._lock:
            task = self._tasks.get(name)
            if task is not None:
                self._tasks[name] = replace(task, broken_reason=None)
