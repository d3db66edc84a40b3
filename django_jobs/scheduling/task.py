"""Periodic tasks: what a schedule is and when it runs next.

A :class:`ScheduledTask` runs a registered job at an interval, by a cron expression in a time
zone, or once at a given time. Its *due times* (ticks) are whole seconds in UTC; the scheduler
(``scheduler.py``) enqueues each due tick once. Cron is evaluated by ``cronsim``, which
follows Debian cron through DST changes: a job at a fixed local time runs once a day (in the
skipped hour of spring it runs right after the change; in the repeated hour of autumn, once),
while a job with a wildcard hour (``0 * * * *``) runs every real hour.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from django.conf import settings

from django_jobs import validation
from django_jobs.conf import jobs_settings
from django_jobs.exceptions import NotJSONSerializable
from django_jobs.job import JobPriority
from django_jobs.serialization import check_json, utcnow


class ScheduleType(enum.StrEnum):
    INTERVAL = "interval"
    CRON = "cron"
    ONCE = "once"


class MissedRunPolicy(enum.StrEnum):
    """What happens to the runs that fell due while no scheduler was running.

    A due time is *missed* when it is found more than the scheduler's grace time (30 s) after
    it was due. Runs found within the grace time always run.
    """

    #: Missed runs are made up for by one run, now (unless a run is due now anyway).
    CATCH_UP = "catch_up"
    #: Missed runs are dropped; the task runs again at its next due time.
    SKIP = "skip"
    #: Every missed run is made up for, the most recent ``MAX_CATCH_UP`` of them at most.
    ALL = "all"


#: Under ``MissedRunPolicy.ALL`` at most this many missed runs of a task are enqueued at once;
#: older ones are dropped, with a warning in the log.
MAX_CATCH_UP = 100

CRON_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_CRON_ALLOWED = {
    "minute": "minutes are 0-59",
    "hour": "hours are 0-23",
    "day-of-month": "days of the month are 1-31, L (the last day) or LW (the last weekday)",
    "month": "months are 1-12 or JAN-DEC",
    "day-of-week": "days of the week are 0-7 or SUN-SAT (0 and 7 are Sunday), with 5L for "
    "the last Friday of the month and MON#2 for its second Monday",
}
CRON_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class InvalidSchedule(ValueError):
    """A task's definition is invalid. ``errors`` maps each bad field to what is wrong with it."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))


class InvalidCron(InvalidSchedule):
    """A cron expression is invalid; ``cron_field`` names the bad field (``"hour"``, ...)."""

    def __init__(self, message: str, cron_field: str | None = None) -> None:
        self.cron_field = cron_field
        super().__init__({"cron_expression": message})

    def __str__(self) -> str:
        return self.errors["cron_expression"]


def normalize_cron(expression: str) -> str:
    """``expression`` with single spaces, and an ``@daily``-style alias spelled out."""
    text = " ".join(str(expression).split())
    return CRON_ALIASES.get(text.lower(), text)


def _cron_error(expression: str, parts: list[str], error: CronSimError) -> InvalidCron:
    for index, name in enumerate(CRON_FIELDS):
        if str(error) != f"Bad {name}":
            continue
        value = parts[index]
        alone = ["*"] * 5
        alone[index] = value
        try:
            CronSim(" ".join(alone), datetime(2000, 1, 1))
        except CronSimError:
            reason = _CRON_ALLOWED[name]
        else:  # Fine by itself: the day never falls in the months given.
            reason = f"that day never occurs in month {parts[3]!r}"
        return InvalidCron(
            f"Bad {name} field {value!r} in the cron expression {expression!r}: {reason}.", name
        )
    return InvalidCron(f"Invalid cron expression {expression!r}: {error}.")


def validate_cron(expression: str) -> str:
    """Return the normalized ``expression`` or raise :class:`InvalidCron` naming the bad field.

    Five fields (minute hour day-of-month month day-of-week) with names (``MON``, ``JAN``),
    ranges, steps, lists, ``L`` and ``#``; or one of ``@hourly @daily @midnight @weekly
    @monthly @yearly @annually``.
    """
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidCron("Enter a cron expression, e.g. '0 2 * * *' for 02:00 every day.")
    text = normalize_cron(expression)
    if text.startswith("@"):
        raise InvalidCron(
            f"Unknown cron shortcut {text!r}; use one of {', '.join(CRON_ALIASES)}, or five fields."
        )
    parts = text.split()
    if len(parts) != 5:
        raise InvalidCron(
            f"A cron expression has 5 fields (minute hour day-of-month month day-of-week); "
            f"{expression.strip()!r} has {len(parts)}."
        )
    try:
        cron = CronSim(text, datetime(2000, 1, 1))
    except CronSimError as exc:
        raise _cron_error(expression.strip(), parts, exc) from None
    try:
        next(cron)
    except StopIteration:
        raise InvalidCron(f"The cron expression {text!r} never matches a date.") from None
    return text


def zone(name: str | None) -> ZoneInfo:
    """The time zone ``name``, or ``settings.TIME_ZONE`` when it is empty."""
    return ZoneInfo(name or settings.TIME_ZONE or "UTC")


def _whole_seconds(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(microsecond=0)


def _aware(value: Any) -> bool:
    return isinstance(value, datetime) and value.utcoffset() is not None


def describe_interval(seconds: int) -> str:
    """``"Every 5 minutes"``, ``"Every hour"``, ``"Every 90 seconds"``."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds % size == 0:
            count = seconds // size
            return f"Every {unit}" if count == 1 else f"Every {count} {unit}s"
    raise AssertionError("unreachable")


@dataclass
class ScheduledTask:
    """A periodic task: run the job ``job_name`` with ``args`` and ``kwargs`` on a schedule.

    - ``INTERVAL``: every ``interval_seconds``, counted from the last run; the first run is at
      once, or one interval after the task is created when ``run_immediately`` is false.
    - ``CRON``: at the times of ``cron_expression`` in ``timezone``.
    - ``ONCE``: at ``run_at``, and never again once it ran.

    ``timezone`` is an IANA name such as ``"Europe/Berlin"``; empty means ``TIME_ZONE``.
    ``priority`` and ``queue`` ``None`` mean the job's own (``@job(priority=..., queue=...)``).
    ``last_run`` is the due time of the last run that was enqueued, ``next_run`` the next due
    time (``None``: none is computed yet, or there is none), ``run_count`` how many runs were
    enqueued.

    The definition is checked when the task is made: :class:`InvalidSchedule` names each bad
    field.
    """

    name: str
    job_name: str
    schedule_type: ScheduleType
    interval_seconds: int | None = None
    cron_expression: str | None = None
    run_at: datetime | None = None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    priority: JobPriority | None = None
    queue: str | None = None
    enabled: bool = True
    last_run: datetime | None = None
    next_run: datetime | None = None
    run_count: int = 0
    timezone: str = ""
    missed_run_policy: MissedRunPolicy = MissedRunPolicy.CATCH_UP
    run_immediately: bool = True
    description: str = ""

    def __post_init__(self) -> None:
        errors: dict[str, str] = {}
        if not isinstance(self.name, str) or not self.name.strip():
            errors["name"] = f"A task needs a name, not {self.name!r}."
        if not isinstance(self.job_name, str) or not self.job_name.strip():
            errors["job_name"] = f"A task needs the name of a job, not {self.job_name!r}."
        for name, kind, what in (
            ("schedule_type", ScheduleType, "schedule type"),
            ("missed_run_policy", MissedRunPolicy, "missed-run policy"),
        ):
            value = getattr(self, name)
            try:
                setattr(self, name, kind(value))
            except ValueError:
                choices = ", ".join(member.value for member in kind)
                errors[name] = f"Unknown {what} {value!r}; use one of {choices}."
        if self.priority is not None:
            try:
                self.priority = validation.priority(self.priority)
            except ValueError as exc:
                errors["priority"] = str(exc)
        if self.schedule_type == ScheduleType.INTERVAL:
            seconds = self.interval_seconds
            if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
                errors["interval_seconds"] = (
                    f"An interval task needs a whole number of seconds >= 1, not {seconds!r}."
                )
        elif self.schedule_type == ScheduleType.CRON:
            try:
                self.cron_expression = validate_cron(self.cron_expression or "")
            except InvalidCron as exc:
                errors["cron_expression"] = str(exc)
        elif self.schedule_type == ScheduleType.ONCE and self.run_at is None:
            errors["run_at"] = "A one-time task needs a time to run at."
        for name in ("run_at", "last_run", "next_run"):
            value = getattr(self, name)
            if value is not None and not _aware(value):
                errors[name] = f"{name} must be a datetime with a time zone, not {value!r}."
        if not isinstance(self.timezone, str):
            errors["timezone"] = "The time zone must be a name such as 'Europe/Berlin'."
        elif self.timezone:
            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                errors["timezone"] = (
                    f"Unknown time zone {self.timezone!r}; use an IANA name such as "
                    "'Europe/Berlin' or 'America/New_York'."
                )
        if not isinstance(self.args, list):
            errors["args"] = f"args must be a JSON list, not {type(self.args).__name__}."
        if not isinstance(self.kwargs, dict):
            errors["kwargs"] = f"kwargs must be a JSON object, not {type(self.kwargs).__name__}."
        for name in ("args", "kwargs"):
            if name not in errors:
                try:
                    check_json(getattr(self, name), name)
                except NotJSONSerializable as exc:
                    errors[name] = str(exc)
        if self.queue is not None:  # None: the job's own queue
            try:
                validation.queue_name(self.queue)
            except ValueError as exc:
                errors["queue"] = str(exc)
        try:
            validation.integer(self.run_count, "run_count")
        except ValueError as exc:
            errors["run_count"] = str(exc)
        if errors:
            raise InvalidSchedule(errors)

    # -- when -----------------------------------------------------------------------------------

    @property
    def tzinfo(self) -> ZoneInfo:
        """The task's time zone (``TIME_ZONE`` when ``timezone`` is empty)."""
        return zone(self.timezone)

    def _cron_after(self, moment: datetime) -> datetime | None:
        assert self.cron_expression is not None
        tz = self.tzinfo
        times = CronSim(self.cron_expression, moment.astimezone(tz))
        # Strictly later than ``moment``: in the repeated hour of autumn a fixed-time job that
        # ran in its first pass must not run in the second (cronsim works in wall time there,
        # so it can offer times of the first pass again).
        for found in times:
            if _whole_seconds(found) > moment:
                return _whole_seconds(found)
        return None

    def next_run_after(self, due: datetime) -> datetime | None:
        """The due time that follows the run due at ``due``: ``None`` when there is none."""
        if self.schedule_type == ScheduleType.INTERVAL:
            assert self.interval_seconds is not None
            return _whole_seconds(due) + timedelta(seconds=self.interval_seconds)
        if self.schedule_type == ScheduleType.CRON:
            return self._cron_after(due)
        return None

    def calculate_next_run(self, now: datetime | None = None) -> datetime | None:
        """When this task should run next, as of ``now``, ignoring ``next_run``.

        Interval: ``last_run + interval_seconds``; a task that never ran runs at ``now``, or at
        ``now + interval_seconds`` without ``run_immediately``. Cron: the first time after
        ``now`` in the task's time zone. Once: ``run_at``, or ``None`` after it ran. The result
        may lie before ``now`` (an interval task whose run is overdue, a past ``run_at``): the
        scheduler then applies the missed-run policy.
        """
        now = utcnow() if now is None else now
        if self.schedule_type == ScheduleType.INTERVAL:
            assert self.interval_seconds is not None
            if self.last_run is not None:
                return self.next_run_after(self.last_run)
            start = _whole_seconds(now)
            if self.run_immediately:
                return start
            return start + timedelta(seconds=self.interval_seconds)
        if self.schedule_type == ScheduleType.CRON:
            return self._cron_after(now)
        assert self.run_at is not None
        due = _whole_seconds(self.run_at)
        if self.last_run is not None and self.last_run >= due:
            return None
        return due

    def upcoming(self, count: int = 5, now: datetime | None = None) -> list[datetime]:
        """The next ``count`` due times (from ``next_run``, or as computed for ``now``)."""
        due = self.next_run or self.calculate_next_run(now)
        times: list[datetime] = []
        while due is not None and len(times) < count:
            times.append(due)
            due = self.next_run_after(due)
        return times

    def describe(self) -> str:
        """The schedule in words: ``"Every 5 minutes"``, ``"At 02:00 every day (UTC)"``."""
        if self.schedule_type == ScheduleType.INTERVAL:
            assert self.interval_seconds is not None
            return describe_interval(self.interval_seconds)
        tz = self.timezone or settings.TIME_ZONE or "UTC"
        if self.schedule_type == ScheduleType.CRON:
            assert self.cron_expression is not None
            words = CronSim(self.cron_expression, datetime(2000, 1, 1)).explain()
            return f"{words} ({tz})"
        assert self.run_at is not None
        local = self.run_at.astimezone(self.tzinfo)
        return f"Once, at {local:%Y-%m-%d %H:%M:%S} ({tz})"

    def tick_ttl(self, due: datetime) -> int:
        """Seconds to remember that the run due at ``due`` was enqueued.

        At least an hour and two periods, so that a scheduler working from stale state (its
        database was down when it recorded a run, say) cannot enqueue that run again.
        """
        following = self.next_run_after(due)
        period = (following - due).total_seconds() if following else 7 * 86400
        return int(min(max(3600.0, 2 * period), 400 * 86400))

    def definition(self) -> dict[str, Any]:
        """The fields a user defines (not the run state), as JSON values."""
        return {
            "description": self.description,
            "job_name": self.job_name,
            "schedule_type": self.schedule_type.value,
            "interval_seconds": self.interval_seconds,
            "run_immediately": self.run_immediately,
            "cron_expression": self.cron_expression or "",
            "run_at": self.run_at.astimezone(UTC).isoformat() if self.run_at else None,
            "timezone": self.timezone,
            "missed_run_policy": self.missed_run_policy.value,
            "args": self.args,
            "kwargs": self.kwargs,
            "priority": None if self.priority is None else self.priority.value,
            "queue": self.queue,
        }


#: The fields of :meth:`ScheduledTask.definition` that decide when a task runs: a change to
#: any of them computes ``next_run`` afresh.
SCHEDULE_FIELDS = (
    "schedule_type",
    "interval_seconds",
    "run_immediately",
    "cron_expression",
    "run_at",
    "timezone",
)


def rescheduled(
    task: ScheduledTask, before: ScheduledTask | None, now: datetime | None = None
) -> tuple[bool, datetime | None]:
    """Whether saving ``task`` (which was ``before``; ``None`` if new) sets ``next_run``, and to
    what.

    A disabled task has no next run. A new task, a changed schedule or a task that is enabled
    again get one computed afresh (:meth:`ScheduledTask.calculate_next_run`); otherwise the
    scheduler's ``next_run`` stands.
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
    return True, task.calculate_next_run(now)


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


def task_from_setting(name: Any, spec: Any) -> ScheduledTask:
    """A task declared in ``DJANGO_JOBS['SCHEDULES']`` as ``name: spec``.

    ``spec`` is a dict with ``job`` and exactly one of ``interval`` (seconds or a timedelta),
    ``cron`` or ``run_at`` (an aware datetime or an ISO 8601 string), and optionally
    ``args``, ``kwargs``, ``priority``, ``queue``, ``timezone``, ``missed_runs`` (a
    :class:`MissedRunPolicy` value), ``enabled``, ``run_immediately`` and ``description``.
    Raises ``ValueError`` naming the problem.
    """
    where = f"DJANGO_JOBS['SCHEDULES'][{name!r}]"
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"Schedule names must be non-empty strings, not {name!r}.")
    if not isinstance(spec, dict):
        raise ValueError(f"{where} must be a dict, not {type(spec).__name__}.")
    known = {
        "job",
        "interval",
        "cron",
        "run_at",
        "args",
        "kwargs",
        "priority",
        "queue",
        "timezone",
        "missed_runs",
        "enabled",
        "run_immediately",
        "description",
    }
    unknown = sorted(map(str, set(spec) - known))
    if unknown:
        raise ValueError(
            f"{where} has unknown keys: {', '.join(unknown)}. Known keys: "
            f"{', '.join(sorted(known))}."
        )
    kinds = [key for key in ("interval", "cron", "run_at") if key in spec]
    if len(kinds) != 1:
        raise ValueError(f"{where} needs exactly one of 'interval', 'cron' and 'run_at'.")
    values: dict[str, Any] = {}
    interval = spec.get("interval")
    if isinstance(interval, timedelta):
        interval = interval.total_seconds()
        interval = int(interval) if interval == int(interval) else interval
    run_at = spec.get("run_at")
    if isinstance(run_at, str):
        try:
            run_at = datetime.fromisoformat(run_at)
        except ValueError:
            raise ValueError(f"{where}['run_at'] {run_at!r} is not an ISO 8601 time.") from None
    for key in ("enabled", "run_immediately"):
        if key in spec and not isinstance(spec[key], bool):
            raise ValueError(f"{where}['{key}'] must be True or False, not {spec[key]!r}.")
        values[key] = spec.get(key, True)
    try:
        return ScheduledTask(
            name=name,
            job_name=spec.get("job"),  # type: ignore[arg-type]
            schedule_type=ScheduleType(kinds[0].replace("run_at", "once")),
            interval_seconds=interval,
            cron_expression=spec.get("cron"),
            run_at=run_at,
            args=spec.get("args", []),
            kwargs=spec.get("kwargs", {}),
            priority=spec.get("priority"),
            queue=spec.get("queue"),
            timezone=spec.get("timezone", ""),
            missed_run_policy=spec.get("missed_runs", MissedRunPolicy.CATCH_UP),
            description=spec.get("description", ""),
            **values,
        )
    except InvalidSchedule as exc:
        keys = {
            "job_name": "job",
            "interval_seconds": "interval",
            "cron_expression": "cron",
            "missed_run_policy": "missed_runs",
        }
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
