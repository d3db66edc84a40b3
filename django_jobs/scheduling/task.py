"""A periodic task: what it runs, on which schedule, and its one shape.

A :class:`ScheduledTask` runs a registered job at an interval, by a cron expression in a time
zone (:mod:`~.cron`), or once at a given time. Its *due times* (ticks) are whole seconds in
UTC; the scheduler (:mod:`~.scheduler`) enqueues each due tick once.

The dataclass is the one shape of a task: the model row (``django_jobs.models``), the stored
definition of a task declared in code (:meth:`ScheduledTask.definition`) and the
``DJANGO_JOBS['SCHEDULES']`` spec (:mod:`~.settings`) convert to and from it by going over
:data:`DEFINITION_FIELDS`, which is read off the dataclass.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, get_args, get_type_hints
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings

from django_jobs import validation
from django_jobs.exceptions import NotJSONSerializable
from django_jobs.job import JobPriority
from django_jobs.scheduling.cron import (
    InvalidCron,
    cron_after,
    describe_cron,
    validate_cron,
    whole_seconds,
    zone,
)
from django_jobs.scheduling.errors import InvalidSchedule
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
    enqueued. ``broken_reason`` says why its next run could not be computed (``None``: it
    could); the schedulers skip such a task until it computes again.

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
    broken_reason: str | None = None

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
                self.priority = JobPriority.parse(self.priority)
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

    def next_run_after(self, due: datetime) -> datetime | None:
        """The due time that follows the run due at ``due``: ``None`` when there is none."""
        if self.schedule_type == ScheduleType.INTERVAL:
            assert self.interval_seconds is not None
            return whole_seconds(due) + timedelta(seconds=self.interval_seconds)
        if self.schedule_type == ScheduleType.CRON:
            assert self.cron_expression is not None
            return cron_after(self.cron_expression, self.tzinfo, due)
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
            start = whole_seconds(now)
            if self.run_immediately:
                return start
            return start + timedelta(seconds=self.interval_seconds)
        if self.schedule_type == ScheduleType.CRON:
            assert self.cron_expression is not None
            return cron_after(self.cron_expression, self.tzinfo, now)
        assert self.run_at is not None
        due = whole_seconds(self.run_at)
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
            return f"{describe_cron(self.cron_expression)} ({tz})"
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

    # -- definition -----------------------------------------------------------------------------

    def definition(self) -> dict[str, Any]:
        """The fields a user defines (:data:`DEFINITION_FIELDS`), as JSON values: enums by value,
        times in ISO 8601 in UTC. :meth:`from_definition` reads it back.

        It is stored as the ``code_definition`` of a task declared in ``DJANGO_JOBS['SCHEDULES']``
        (see ``DatabaseTaskStore.sync``): its format must not change, or the stored rows would
        all look changed.
        """
        return {name: _to_json(name, getattr(self, name)) for name in DEFINITION_FIELDS}

    @classmethod
    def from_definition(
        cls, name: str, definition: Mapping[str, Any], **state: Any
    ) -> ScheduledTask:
        """The task ``name`` with the fields of ``definition`` (as :meth:`definition` writes
        them) and ``state`` (``enabled``, the run state). A field missing from ``definition``
        takes its default; :class:`InvalidSchedule` names each bad one."""
        values = {
            key: _from_json(key, definition[key]) for key in DEFINITION_FIELDS if key in definition
        }
        return cls(name=name, **values, **state)


#: The run state, kept by the schedulers: when the task last and next runs, how often it ran.
RUN_STATE_FIELDS = ("last_run", "next_run", "run_count")
#: The fields a user defines (in the admin or in ``DJANGO_JOBS['SCHEDULES']``): all but the
#: name, ``enabled``, the run state and ``broken_reason``. Read off the dataclass, so that a
#: field added to it is carried by every conversion (the model row, the stored definition, the
#: settings' spec).
DEFINITION_FIELDS = tuple(
    f.name
    for f in fields(ScheduledTask)
    if f.name not in {"name", "enabled", "broken_reason", *RUN_STATE_FIELDS}
)
#: The definition fields whose "not set" is ``None``: the model's text columns keep it as "".
OPTIONAL_FIELDS = frozenset(
    f.name for f in fields(ScheduledTask) if f.default is None and f.name in DEFINITION_FIELDS
)
#: Every field of a task, in the dataclass's order: the columns of its row (the model's fields
#: of these names), which :func:`task_from_row` reads.
TASK_FIELDS = tuple(f.name for f in fields(ScheduledTask))
_OPTIONAL_AT = tuple(TASK_FIELDS.index(name) for name in sorted(OPTIONAL_FIELDS))
_TIME_FIELDS = frozenset(
    name for name, hint in get_type_hints(ScheduledTask).items() if datetime in get_args(hint)
)
# Written as "" rather than null when not set: the format of the stored definitions since 0.1.
_BLANK_IN_DEFINITION = frozenset({"cron_expression"})


def task_from_row(values: Sequence[Any]) -> ScheduledTask:
    """The task of a row's :data:`TASK_FIELDS` values as Django reads them (the one conversion
    of a row to a task): a blank text column of an optional field is "not set".
    :class:`InvalidSchedule` names each bad field."""
    values = list(values)
    for index in _OPTIONAL_AT:
        if values[index] == "":
            values[index] = None
    return ScheduledTask(*values)


def _to_json(name: str, value: Any) -> Any:
    if value is None:
        return "" if name in _BLANK_IN_DEFINITION else None
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value


def _from_json(name: str, value: Any) -> Any:
    # Enums are given by value: the task's own check turns them into members.
    if value == "" and name in OPTIONAL_FIELDS:
        return None
    if isinstance(value, str) and name in _TIME_FIELDS:
        return datetime.fromisoformat(value)
    return value


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
