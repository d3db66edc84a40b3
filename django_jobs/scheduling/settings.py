"""The tasks declared in ``DJANGO_JOBS['SCHEDULES']``: each ``name: spec`` becomes a
:class:`~django_jobs.scheduling.task.ScheduledTask` (:func:`task_from_setting`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django_jobs.conf import jobs_settings
from django_jobs.scheduling.errors import InvalidSchedule
from django_jobs.scheduling.task import DEFINITION_FIELDS, ScheduledTask, ScheduleType

#: The keys of a spec that are not spelled like the task's field they set. Every other field
#: of the definition is set by the key of its own name.
_RENAMED = {
    "job": "job_name",
    "interval": "interval_seconds",
    "cron": "cron_expression",
    "missed_runs": "missed_run_policy",
}
#: A spec's keys, each with the task's field it sets. The schedule type is not a key: it is
#: told by which of ``interval``, ``cron`` and ``run_at`` is given.
SETTING_KEYS: dict[str, str] = {
    **_RENAMED,
    **{
        name: name
        for name in (*DEFINITION_FIELDS, "enabled")
        if name not in _RENAMED.values() and name != "schedule_type"
    },
}
_KINDS = {"interval": ScheduleType.INTERVAL, "cron": ScheduleType.CRON, "run_at": ScheduleType.ONCE}


def task_from_setting(name: Any, spec: Any) -> ScheduledTask:
    """A task declared in ``DJANGO_JOBS['SCHEDULES']`` as ``name: spec``.

    ``spec`` is a dict with ``job`` and exactly one of ``interval`` (seconds or a timedelta),
    ``cron`` or ``run_at`` (an aware datetime or an ISO 8601 string), and optionally
    ``args``, ``kwargs``, ``priority``, ``queue``, ``timezone``, ``missed_runs`` (a
    :class:`~django_jobs.scheduling.task.MissedRunPolicy` value), ``enabled``,
    ``run_immediately`` and ``description``. A key left out takes the task's default.
    Raises ``ValueError`` naming the problem.
    """
    where = f"DJANGO_JOBS['SCHEDULES'][{name!r}]"
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"Schedule names must be non-empty strings, not {name!r}.")
    if not isinstance(spec, dict):
        raise ValueError(f"{where} must be a dict, not {type(spec).__name__}.")
    unknown = sorted(map(str, set(spec) - set(SETTING_KEYS)))
    if unknown:
        raise ValueError(
            f"{where} has unknown keys: {', '.join(unknown)}. Known keys: "
            f"{', '.join(sorted(SETTING_KEYS))}."
        )
    kinds = [key for key in _KINDS if key in spec]
    if len(kinds) != 1:
        raise ValueError(f"{where} needs exactly one of 'interval', 'cron' and 'run_at'.")
    values: dict[str, Any] = {SETTING_KEYS[key]: value for key, value in spec.items()}
    interval = values.get("interval_seconds")
    if isinstance(interval, timedelta):
        seconds = interval.total_seconds()
        values["interval_seconds"] = int(seconds) if seconds == int(seconds) else seconds
    run_at = values.get("run_at")
    if isinstance(run_at, str):
        try:
            values["run_at"] = datetime.fromisoformat(run_at)
        except ValueError:
            raise ValueError(f"{where}['run_at'] {run_at!r} is not an ISO 8601 time.") from None
    for key in ("enabled", "run_immediately"):
        if key in spec and not isinstance(spec[key], bool):
            raise ValueError(f"{where}['{key}'] must be True or False, not {spec[key]!r}.")
    # The job is passed even when missing, so that the task's own check names it.
    values["job_name"] = spec.get("job")
    try:
        return ScheduledTask(name=name, schedule_type=_KINDS[kinds[0]], **values)
    except InvalidSchedule as exc:
        keys = {field: key for key, field in SETTING_KEYS.items()}
        problems = "; ".join(
            f"{where}['{keys.get(key, key)}']: {message}" for key, message in exc.errors.items()
        )
        raise ValueError(problems) from None


def tasks_from_settings() -> dict[str, ScheduledTask]:
    """The tasks of ``DJANGO_JOBS['SCHEDULES']`` by name; ``ValueError`` for a bad one."""
    declared = jobs_settings.SCHEDULES
    if not isinstance(declared, dict):
        raise ValueError(
            f"DJANGO_JOBS['SCHEDULES'] must be a dict of task name to schedule, not "
            f"{type(declared).__name__}."
        )
    return {name: task_from_setting(name, spec) for name, spec in declared.items()}
