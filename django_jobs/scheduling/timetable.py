"""Which of a scheduler's tasks are due, without looking at those that are not.

A :class:`Timetable` keeps the enabled tasks by next run in a heap, and apart those that have
none yet (new, enabled again, rescheduled by a write that bypassed ``save()``, or broken): a
second's work is then O(due · log n), however many tasks wait. Entries are replaced lazily: a
task whose next run changed gets a new entry, and the old one is dropped when it comes up
(an entry counts only while the task's ``next_run`` is still its time).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from datetime import datetime

from django_jobs.scheduling.task import ScheduledTask


class Timetable:
    """The enabled tasks of a scheduler by next run (see the module's docstring)."""

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, str]] = []
        self._unscheduled: set[str] = set()  # enabled, without a next run

    def rebuild(self, tasks: Iterable[ScheduledTask]) -> None:
        """Forget everything and index ``tasks``."""
        self._heap, self._unscheduled = [], set()
        for task in tasks:
            if task.enabled and task.next_run is not None:
                self._heap.append((task.next_run, task.name))
            elif task.enabled:
                self._unscheduled.add(task.name)
        heapq.heapify(self._heap)

    def put(self, task: ScheduledTask) -> None:
        """``task`` is new or changed: index it as it is now."""
        if task.enabled and task.next_run is not None:
            heapq.heappush(self._heap, (task.next_run, task.name))
            self._unscheduled.discard(task.name)
        elif task.enabled:
            self._unscheduled.add(task.name)
        else:
            self._unscheduled.discard(task.name)

    def take_due(self, tasks: Mapping[str, ScheduledTask], now: datetime) -> list[str]:
        """The names of the tasks of ``tasks`` that are due as of ``now`` or have no next run,
        in name order. They leave the timetable: :meth:`put` each one back as it is after its
        turn (processed or not)."""
        due = self._unscheduled
        self._unscheduled = set()
        while self._heap and self._heap[0][0] <= now:
            when, name = heapq.heappop(self._heap)
            if _current(tasks, when, name):
                due.add(name)
        return sorted(due)

    def next_due(self, tasks: Mapping[str, ScheduledTask]) -> datetime | None:
        """The earliest next run of the tasks of ``tasks`` (``None``: none has one)."""
        while self._heap and not _current(tasks, *self._heap[0]):
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None


def _current(tasks: Mapping[str, ScheduledTask], when: datetime, name: str) -> bool:
    task = tasks.get(name)
    return task is not None and task.enabled and task.next_run == when
