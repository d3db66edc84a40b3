"""When a task's runs fall due: its next run computed afresh, from now (:func:`next_run_from_now`),
whether a save sets ``next_run`` afresh (:func:`rescheduled`), and which of the due times found
as of now to enqueue (:func:`due_runs`), following the task's
:class:`~django_jobs.scheduling.task.MissedRunPolicy` for the runs that fell due while no
scheduler was running. :func:`broken_reason` words why a task's next run cannot be computed."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django_jobs.scheduling.errors import InvalidSchedule
from django_jobs.scheduling.task import (
    MAX_CATCH_UP,
    SCHEDULE_FIELDS,
    MissedRunPolicy,
    ScheduledTask,
    ScheduleType,
)
from django_jobs.serialization import utcnow


def next_run_from_now(task: ScheduledTask, now: datetime | None = None) -> datetime | None:
    """The next run of ``task`` computed afresh as of ``now`` (a new task, a changed schedule, a
    task enabled again): :meth:`ScheduledTask.calculate_next_run`, except that an interval
    task's runs that fell due before ``now`` are not made up for. They fell due while the task
    was off or had another schedule: that is no outage, so the missed-run policy does not apply.
    The task keeps its rhythm: the first due time ``last_run + k * interval_seconds`` at or
    after ``now`` itself, not after ``now``'s whole second: a task enabled again at 12:00:30.9
    whose rhythm falls on 12:00:30 runs next at 12:00:30 + k * interval_seconds, not at 12:00:30,
    which fell due while it was off. (A task that never ran runs at once: at ``now``'s whole
    second, the form of a due time.)

    May raise whatever the schedule's computation raises (``InvalidSchedule``, say).
    """
    now = utcnow() if now is None else now
    due = task.calculate_next_run(now)
    if (
        task.schedule_type == ScheduleType.INTERVAL
        and task.last_run is not None
        and due is not None
        and due < now
    ):
        step = timedelta(seconds=task.interval_seconds or 1)
        due += math.ceil((now - due) / step) * step
    return due


def broken_reason(exc: BaseException) -> str:
    """Why a task whose schedule raised ``exc`` is broken, for the admin and the log."""
    if isinstance(exc, InvalidSchedule):
        return str(exc)
    return f"its next run cannot be computed: {type(exc).__name__}: {exc}"


def rescheduled(
    task: ScheduledTask, before: ScheduledTask | None, now: datetime | None = None
) -> tuple[bool, datetime | None]:
    """Whether saving ``task`` (which was ``before``; ``None`` if new) sets ``next_run``, and to
    what.

    A disabled task has no next run. A new task, a changed schedule or a task that is enabled
    again get one computed afresh (:func:`next_run_from_now`); otherwise the scheduler's
    ``next_run`` stands. May raise whatever the schedule's computation raises.
    """
    if not task.enabled:
        return True, None
    changed = (
        before is None
        or not before.enabled
        or before.next_run is None
        or any(task.definition()[name] != before.definition()[name] for name in SCHEDULE_FIELDS)
    )
    if not changed:
        return False, task.next_run
    return True, next_run_from_now(task, now)


# -- missed runs ---------------------------------------------------------------------------------

# How many due times are looked at when a task is found far behind (a per-minute cron after
# two years without a scheduler, say); beyond that the missed runs are dropped, and the task
# goes on from now.
_MAX_SCAN = 1_000_000


@dataclass(frozen=True)
class DueRuns:
    """What to do with a task's due times as of ``now``: see :func:`due_runs`."""

    fire: list[datetime]  # due times to enqueue, oldest first
    due: int  # how many due times had come (fire + dropped)
    missed: int  # how many of them were found later than the grace time
    first: datetime | None  # the oldest due time
    next_run: datetime | None  # the due time after all of them

    @property
    def dropped(self) -> int:
        return self.due - len(self.fire)


def due_runs(task: ScheduledTask, now: datetime, grace: float) -> DueRuns:
    """The due times of ``task`` from its ``next_run`` up to ``now``, and which of them to run.

    A due time more than ``grace`` seconds before ``now`` was missed (no scheduler ran then);
    the others are on time and always run. Missed ones follow the task's policy: CATCH_UP runs
    the latest of them unless a run is on time anyway, SKIP drops them, ALL runs them (the
    latest :data:`MAX_CATCH_UP` at most).
    """
    if task.next_run is None or task.next_run > now:
        return DueRuns([], 0, 0, None, task.next_run)
    late_before = now - timedelta(seconds=grace)
    first = task.next_run
    missed: list[datetime] = []  # the latest MAX_CATCH_UP of them
    on_time: list[datetime] = []
    count = missed_count = 0
    following: datetime | None = first
    if task.schedule_type == ScheduleType.INTERVAL and first < late_before:
        # Jump over a long run of missed intervals instead of stepping through them.
        step = timedelta(seconds=task.interval_seconds or 1)
        skipped = max(0, math.ceil((late_before - first) / step) - MAX_CATCH_UP)
        count = missed_count = skipped
        following = first + skipped * step
    while following is not None and following <= now and count < _MAX_SCAN:
        count += 1
        if following < late_before:
            missed_count += 1
            missed.append(following)
            del missed[:-MAX_CATCH_UP]
        else:
            on_time.append(following)
        following = task.next_run_after(following)
    if count >= _MAX_SCAN and following is not None and following <= now:
        missed, following = [], task.calculate_next_run(now)
    policy = task.missed_run_policy
    if policy == MissedRunPolicy.ALL:
        fire = missed + on_time
    elif policy == MissedRunPolicy.CATCH_UP and missed and not on_time:
        fire = missed[-1:]
    else:
        fire = on_time
    return DueRuns(fire, count, missed_count, first, following)
