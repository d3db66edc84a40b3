"""How a running scheduler learns that the tasks changed, how it obeys writes that bypassed
``ScheduledTask.save()``, and how it marks a task whose runs cannot be computed (or enqueued)
broken.

Every write to the ``ScheduledTask`` table is seen within a second: on SQLite and PostgreSQL
triggers (migration 0004) bump a one-row counter, ``django_jobs_schedulesversion``, on every
insert, delete and update of a column users edit, whoever writes (``save()``,
``QuerySet.update()``, ``bulk_create``, raw SQL). :func:`database_version` reads it: one
primary-key lookup, every time the scheduler wakes. On other databases there is no counter and
it returns ``None``: edits made with ``save()`` and ``delete()`` are still seen within a second
(their signal bumps a counter in Redis), others by the scheduler's reload every 30 s.

``save()`` computes ``next_run`` afresh when a task is enabled or its schedule changes; a write
that bypasses it leaves the stored ``next_run`` as it was. :func:`stale_next_runs` finds those
tasks when the scheduler loads the tasks again, so that their next run is computed from now
too: re-enabling a task never makes up for the time it was off.

A task whose runs cannot be computed (its computation raised :class:`InvalidSchedule`, or
anything else) is marked broken with the reason (:func:`mark_broken`), said once in the log,
and skipped until the tasks are loaded again; the other tasks go on. So is a task whose tick
Redis refused (:func:`mark_refused`: a key of it of the wrong type, say), while Redis takes the
others.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta

from django.db import connections, router

from django_jobs.exceptions import StoreError
from django_jobs.scheduling.due import broken_reason, next_run_from_now
from django_jobs.scheduling.errors import InvalidSchedule
from django_jobs.scheduling.stores import TaskStore
from django_jobs.scheduling.task import SCHEDULE_FIELDS, ScheduledTask

logger = logging.getLogger("django_jobs.scheduler")

#: The table of the counter, and the databases that have it (see migration 0004).
VERSION_TABLE = "django_jobs_schedulesversion"
VERSION_VENDORS = frozenset({"sqlite", "postgresql"})


def has_database_version(model: type) -> bool:
    """Whether the database of ``model`` (the ``ScheduledTask`` model) has the triggers."""
    return connections[router.db_for_write(model)].vendor in VERSION_VENDORS


def database_version(model: type) -> int | None:
    """The version of ``model``'s table (the ``ScheduledTask`` model) that its triggers keep;
    ``None`` on a database without them."""
    if not has_database_version(model):
        return None
    connection = connections[router.db_for_write(model)]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT version FROM {VERSION_TABLE} WHERE id = 1")
        row = cursor.fetchone()
    return None if row is None else int(row[0])


def load_tasks(
    store: TaskStore,
    before: Mapping[str, ScheduledTask],
    loaded_before: Mapping[str, ScheduledTask],
    since: datetime | None = None,
) -> tuple[dict[str, ScheduledTask], dict[str, ScheduledTask]]:
    """The tasks of ``store`` by name as the scheduler is to work with them, and as the store
    gave them.

    ``before`` is the tasks as the scheduler had them, ``loaded_before`` as the store gave them
    last time. A store gives an unchanged task as the same object (see
    :meth:`TaskStore.load`): the scheduler keeps its own version of it (its run state may be
    ahead), and only the new and changed ones are looked at; the stale ``next_run`` of each
    of them (:func:`stale_next_runs`) is cleared, so that it is computed from now. ``since``
    is when the scheduler read the tasks last time (``None``: never).
    """
    loaded = {task.name: task for task in store.load()}
    tasks: dict[str, ScheduledTask] = {}
    fresh: list[ScheduledTask] = []
    for name, task in loaded.items():
        kept = before.get(name)
        if kept is not None and loaded_before.get(name) is task:
            tasks[name] = kept
        else:
            tasks[name] = task
            fresh.append(task)
    for name, expected in stale_next_runs(before, fresh, since).items():
        store.forget_next_run(name, expected)
        tasks[name] = replace(tasks[name], next_run=None)
    return tasks, loaded


def mark_broken(store: TaskStore, name: str, exc: Exception) -> None:
    """The runs of task ``name`` cannot be computed (``exc``): mark it broken in ``store``, and
    log it at ERROR if no scheduler did for that reason (with the traceback of an unexpected
    error)."""
    reason = broken_reason(exc)
    if store.mark_broken(name, reason):
        unexpected = not isinstance(exc, InvalidSchedule)
        logger.error("task %s is broken and does not run: %s", name, reason, exc_info=unexpected)


#: How the reason of a task whose tick Redis refused begins (:func:`mark_refused`).
REFUSED = "its runs cannot be enqueued: "


def mark_refused(store: TaskStore, name: str, exc: StoreError) -> None:
    """Redis refused to fire a tick of task ``name`` (``exc``: a key of the task of the wrong
    type, a script error), though it takes other calls: mark it broken in ``store`` as
    :func:`mark_broken` does, with what Redis said (Redis's words, no traceback, once)."""
    reason = f"{REFUSED}{exc}"
    if store.mark_broken(name, reason):
        logger.error("task %s is broken and does not run: %s", name, reason)


def refused(reason: str | None) -> bool:
    """Whether a task broken for ``reason`` is so because Redis refused its tick
    (:func:`mark_refused`): it is sound again once a tick of it fires, not as soon as its next
    run is computed."""
    return reason is not None and reason.startswith(REFUSED)


def stale_next_runs(
    before: Mapping[str, ScheduledTask],
    loaded: Iterable[ScheduledTask],
    since: datetime | None = None,
) -> dict[str, datetime | None]:
    """The tasks of ``loaded`` whose stored ``next_run`` must be computed afresh, each with that
    stored value (to clear it only if no one changed it since); ``before`` is the tasks as the
    scheduler had them, ``since`` when it read them.

    - A disabled task has no next run (``save()`` clears it; ``QuerySet.update()`` does not).
      Clearing it while the task is off means that enabling it, however it is done, computes
      its next run from then.
    - An enabled task whose schedule, or ``enabled``, changed since the scheduler last loaded it
      while its ``next_run`` did not: the write bypassed ``save()``. Unless that next run
      :func:`fits` the new schedule and was not due yet at ``since``: ``save()`` may well have
      computed it (the new schedule's next run is the old one's, say an interval of 2 s
      halved), and computing it again from a later now would drop it.
    """
    stale: dict[str, datetime | None] = {}
    for task in loaded:
        old = before.get(task.name)
        if not task.enabled:
            if task.next_run is not None:
                stale[task.name] = task.next_run
        elif (
            old is not None
            and task.next_run is not None
            and task.next_run == old.next_run
            and (not old.enabled or _schedule(task) != _schedule(old))
            and not (since is not None and task.next_run >= since and fits(task))
        ):
            stale[task.name] = task.next_run
    return stale


def fits(task: ScheduledTask) -> bool:
    """Whether ``task.next_run`` is a due time of its schedule: the one computed afresh just
    before it (:func:`~.due.next_run_from_now`)."""
    assert task.next_run is not None
    try:
        return next_run_from_now(task, task.next_run - timedelta(microseconds=1)) == task.next_run
    except Exception:  # computed afresh, it is marked broken (see mark_broken)
        return False


def _schedule(task: ScheduledTask) -> list[object]:
    definition = task.definition()
    return [definition[name] for name in SCHEDULE_FIELDS]
