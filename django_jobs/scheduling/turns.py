"""A scheduler's turns: what it does for a batch of due tasks in one pass
(:class:`~django_jobs.scheduling.scheduler.JobScheduler` takes them :data:`~.scheduler.BATCH` at
a time).

Each task's turn is planned (:meth:`TaskTurns._plan`: its next run computed if it has none, its
due runs and their jobs), their ticks fired in one round trip, and the runs recorded in one go.
One task's trouble stops neither the batch nor the pass: a task whose runs cannot be computed,
or whose tick Redis refuses (a key of it of the wrong type, a script error) while Redis takes
the others, is marked broken with the reason, said once in the log, and skipped until the tasks
are loaded again (see :mod:`~.changes`). Redis or the database not answering (or Redis refusing
every call: access, memory) is no task's trouble: the whole pass waits, and is done again.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from django.db import DatabaseError

from django_jobs.exceptions import StoreError
from django_jobs.job import Job
from django_jobs.scheduling.changes import mark_broken, mark_refused, refused
from django_jobs.scheduling.due import due_runs, next_run_from_now
from django_jobs.scheduling.missed import report_missed
from django_jobs.scheduling.stores import RunRecord, counted
from django_jobs.scheduling.task import ScheduledTask
from django_jobs.scheduling.ticks import Fired, fire_runs, tick_job
from django_jobs.store.errors import refuses_every_call

if TYPE_CHECKING:
    from django_jobs.queue import JobQueue
    from django_jobs.scheduling.missed import Outage
    from django_jobs.scheduling.stores import TaskStore
    from django_jobs.scheduling.timetable import Timetable

logger = logging.getLogger("django_jobs.scheduler")

#: After an outage (a pass failed: Redis or the database did not answer) the scheduler knows
#: which runs it missed: those due more than this (seconds) before the pass that works again,
#: and before its last failed attempt, follow the task's missed-run policy, instead of all runs
#: of the last MISSED_GRACE seconds being enqueued at once.
AFTER_OUTAGE_GRACE = 2.0

# A task's turn up to firing (TaskTurns._plan): the task, its next run, due runs and jobs.
_Turn = tuple[ScheduledTask, datetime | None, list[tuple[datetime, Job]]]


def after_outage(outage: Outage, now: datetime, grace: float) -> float:
    """The grace time (seconds) of the pass at ``now`` that works after ``outage``; ``grace``
    is the scheduler's (:data:`~.scheduler.MISSED_GRACE`).

    The runs due before its last failed attempt fell due in the outage: they are missed, but
    for those of the last :data:`AFTER_OUTAGE_GRACE` seconds. Those due after it are on time,
    however long the scheduler paused before trying again (its pauses grow to 10 s): Redis may
    have answered all that while, and a run due then was no run missed.
    """
    since_failed = (now - outage.failed).total_seconds()
    return min(grace, max(AFTER_OUTAGE_GRACE, since_failed))


class TaskTurns:
    """The turns of a scheduler's due tasks; a part of ``JobScheduler``, whose state it uses."""

    store: TaskStore
    jobs: JobQueue
    grace: float
    _tasks: dict[str, ScheduledTask]
    _skipped: set[str]
    _timetable: Timetable
    _outage: Outage | None
    _started_at: datetime | None

    def _turns(self, names: list[str], now: datetime) -> list[Fired]:
        """The turns of the tasks ``names`` as of ``now``: their due runs fired in one round trip
        and recorded in one go; each is then back in the timetable (or out: see :meth:`_plan`,
        and a task whose tick Redis refused, which is broken)."""
        planned = [turn for name in names if (turn := self._plan(name, now)) is not None]
        outcomes = fire_runs(self.jobs, [(t, *run) for t, _, runs in planned for run in runs])
        for outcome in outcomes:
            if isinstance(outcome, StoreError) and refuses_every_call(outcome):
                raise outcome  # no task's trouble: the whole pass waits (nothing recorded)
        each = iter(outcomes)
        done: list[Fired] = []
        records: list[RunRecord] = []
        faults: dict[str, StoreError] = {}
        for task, next_run, runs in planned:
            mine = [next(each) for _ in runs]
            fired = [f for f in mine if isinstance(f, Fired)]
            fault = next((f for f in mine if isinstance(f, StoreError)), None)
            done += fired
            if fault is not None:
                faults[task.name] = fault
                next_run = None  # broken: none until it is tried again
            if fault is None or fired:  # runs that did fire are counted all the same
                records.append(
                    RunRecord(task.name, task.next_run, tuple(f.due for f in fired), next_run)
                )
        self.store.record(records)
        for record in records:
            if record.name not in faults:
                self._recorded(record)
        for name, fault in faults.items():
            self._skip(name)
            mark_refused(self.store, name, fault)
        return done

    def _recorded(self, record: RunRecord) -> None:
        """The turn of ``record``'s task was recorded: it is back in the timetable, sound if
        Redis had refused its tick before."""
        task = replace(counted(self._tasks[record.name], record), next_run=record.next_run)
        if refused(task.broken_reason):
            task = self._sound(task, "its runs are enqueued again")
        self._timetable.put(task)
        self._tasks[record.name] = task

    def _sound(self, task: ScheduledTask, how: str) -> ScheduledTask:
        """``task``, broken until now, is sound again (``how`` says what works again): so
        stored, said once, and returned without its reason."""
        self.store.mark_sound(task.name)
        logger.warning("task %s is no longer broken: %s", task.name, how)
        return replace(task, broken_reason=None)

    def _skip(self, name: str) -> None:
        """Task ``name`` is broken: skipped until the tasks are loaded again (it changed, or
        ``RELOAD_EVERY``)."""
        self._tasks.pop(name, None)
        self._skipped.add(name)

    def _plan(self, name: str, now: datetime) -> _Turn | None:
        """Task ``name``'s turn as of ``now`` up to firing. ``None`` if nothing is due: it is
        back in the timetable, or out of it (gone, off, broken, a one-time task that ran)."""
        task = self._tasks.get(name)
        if task is None or not task.enabled:
            return None
        try:
            if task.next_run is None:
                next_run = next_run_from_now(task, now)
                if next_run is None:
                    return None  # a one-time task that ran: out of the timetable
                stored = self.store.set_next_run(name, next_run)
                if stored is None:
                    self._tasks.pop(name)
                    return None
                task = self._tasks[name] = stored
            # After an outage the runs due during it were missed, however recent.
            grace = (
                self.grace if self._outage is None else after_outage(self._outage, now, self.grace)
            )
            runs = due_runs(task, now, grace)
            report_missed(task, runs, self._outage, self._started_at, self.grace)
            try:
                jobs = [(due, tick_job(self.jobs, task, due)) for due in runs.fire]
            except (ValueError, TypeError) as exc:
                # The task cannot make a valid job (e.g. its queue was removed from QUEUES):
                # its runs are dropped, not retried every second.
                logger.error("task %s: cannot enqueue its job: %s", task.name, exc)
                jobs = []
        except (DatabaseError, StoreError):
            raise  # the whole pass waits for them
        except Exception as exc:  # one task's trouble must not stop the others
            self._skip(name)
            mark_broken(self.store, name, exc)
            return None
        # A task whose tick Redis refused is sound again once one fires (see _recorded).
        if task.broken_reason is not None and not refused(task.broken_reason):
            task = self._tasks[name] = self._sound(task, "its runs are computed again")
        if not runs.due:
            self._timetable.put(task)
            return None
        return task, runs.next_run, jobs
