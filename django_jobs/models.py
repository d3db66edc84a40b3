"""``ScheduledTask``: the periodic tasks that ``manage.py runscheduler`` runs, kept in the database
so that they can be managed in the admin."""

from __future__ import annotations

import enum
import logging
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models, transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from django_jobs.exceptions import StoreError
from django_jobs.job import JobPriority
from django_jobs.queue import JobQueue
from django_jobs.scheduling.due import broken_reason, rescheduled
from django_jobs.scheduling.errors import InvalidSchedule
from django_jobs.scheduling.task import (
    DEFINITION_FIELDS,
    MAX_CATCH_UP,
    RUN_STATE_FIELDS,
    TASK_FIELDS,
    MissedRunPolicy,
    ScheduleType,
    task_from_row,
)
from django_jobs.scheduling.task import ScheduledTask as Task  # ScheduledTask: the model
from django_jobs.serialization import utcnow
from django_jobs.store import calls
from django_jobs.store.execute import run

logger = logging.getLogger("django_jobs.scheduler")


class ScheduledTask(models.Model):
    """A periodic task. :meth:`to_task` gives the :class:`django_jobs.scheduling.task.ScheduledTask`
    the scheduler works with; the fields mirror it."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    job_name = models.CharField(
        "job", max_length=200, help_text="The registered job to run (its @job name)."
    )
    args = models.JSONField(
        default=list, blank=True, help_text='Positional arguments, a JSON list: [42, "a"].'
    )
    kwargs = models.JSONField(
        default=dict, blank=True, help_text='Keyword arguments, a JSON object: {"user_id": 42}.'
    )
    enabled = models.BooleanField(default=True)

    schedule_type = models.CharField(
        "schedule", max_length=10, choices=[(t.value, t.name.title()) for t in ScheduleType]
    )
    interval_seconds = models.PositiveIntegerField(
        "interval (seconds)",
        null=True,
        blank=True,
        validators=[MinValueValidator(1, "The interval must be at least 1 second.")],
        help_text="Interval tasks: seconds from one run to the next.",
    )
    run_immediately = models.BooleanField(
        default=True,
        help_text="Interval tasks: the first run is at once; otherwise one interval later.",
    )
    cron_expression = models.CharField(
        max_length=200,
        blank=True,
        help_text="Cron tasks: minute hour day-of-month month day-of-week, e.g. "
        "<code>30 2 * * MON-FRI</code>, or @hourly, @daily, @weekly, @monthly, @yearly.",
    )
    run_at = models.DateTimeField(null=True, blank=True, help_text="One-time tasks: when to run.")
    timezone = models.CharField(
        "time zone",
        max_length=64,
        blank=True,
        help_text="Cron tasks follow this time zone, through DST changes. Empty: TIME_ZONE.",
    )
    missed_run_policy = models.CharField(
        "missed runs",
        max_length=10,
        choices=[
            (MissedRunPolicy.CATCH_UP.value, "Catch up once"),
            (MissedRunPolicy.SKIP.value, "Skip"),
            (MissedRunPolicy.ALL.value, f"Run all (at most {MAX_CATCH_UP})"),
        ],
        default=MissedRunPolicy.CATCH_UP.value,
        help_text="What to do with runs that fell due while no scheduler was running.",
    )

    priority = models.PositiveSmallIntegerField(
        choices=[(p.value, p.name.title()) for p in sorted(JobPriority, reverse=True)],
        null=True,
        blank=True,
        help_text="Empty: the job's own priority.",
    )
    queue = models.CharField(
        max_length=100, blank=True, help_text="Empty: the job's own queue, or the default queue."
    )

    last_run = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Due time of the last run enqueued."
    )
    next_run = models.DateTimeField(null=True, blank=True, editable=False)
    run_count = models.PositiveIntegerField(default=0, editable=False)
    # The definition last written from DJANGO_JOBS['SCHEDULES'] (None: made in the admin), to
    # tell the fields changed in the admin, which a restart keeps, from those changed in code.
    code_definition = models.JSONField(null=True, blank=True, editable=False)
    # Why its next run cannot be computed, and since when (None: it can). The schedulers skip
    # a broken task, and try again when it changes or they load the tasks again.
    broken_reason = models.TextField(  # noqa: DJ001 (None: not broken)
        "broken", null=True, blank=True, editable=False
    )
    broken_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField("created", auto_now_add=True)
    updated_at = models.DateTimeField("updated", auto_now=True)

    # The fields the running full_clean() leaves out (see clean()).
    _clean_exclude: set[str] = set()  # noqa: RUF012 (replaced, never changed in place)

    class Meta:
        ordering = ("name",)
        verbose_name = "scheduled task"

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save, computing ``next_run`` afresh when the schedule changed or the task was enabled
        (a disabled task has none). A task whose next run cannot be computed is saved broken
        (``broken_reason``), without a next run; one that computes is not broken.

        Saving an existing task never writes ``last_run`` and ``run_count``, nor ``next_run``
        unless it was computed here: those belong to the schedulers, which may have moved them
        since this instance was read.
        """
        adding, before = True, None
        if not self._state.adding and self.pk is not None:
            row = type(self)._default_manager.filter(pk=self.pk).first()
            adding, before = row is None, _task_or_none(row)
        if before is not None:  # the stored run state is the schedulers' latest
            self.last_run, self.next_run = before.last_run, before.next_run
            self.run_count = before.run_count
        changed, self.next_run, reason = _rescheduled(self, before)
        if reason is None:
            self.broken_reason = self.broken_at = None
        elif reason != self.broken_reason:
            # Saved without clean(), or by code: a broken task, not a crash of the caller or
            # of the schedulers, which skip it.
            logger.error("task %s is broken and does not run: %s", self.name, reason)
            self.broken_reason, self.broken_at = reason, utcnow()
        if not adding and kwargs.get("update_fields") is None and not kwargs.get("force_insert"):
            skip = set(RUN_STATE_FIELDS) - ({"next_run"} if changed else set())
            kwargs["update_fields"] = [
                f.name
                for f in self._meta.concrete_fields
                if not f.primary_key and f.name not in skip
            ]
        super().save(*args, **kwargs)

    def to_task(self) -> Task:
        """The task as the scheduler sees it (:func:`~django_jobs.scheduling.task.task_from_row`);
        :class:`~django_jobs.scheduling.errors.InvalidSchedule` if a field is invalid."""
        return task_from_row([getattr(self, name) for name in TASK_FIELDS])

    def set_definition(self, task: Task, *, enabled: bool = True) -> None:
        """Copy the user-defined fields of ``task`` (and ``enabled`` if asked) to this row: the
        one conversion of a task to a row. The run state is the schedulers' (see :meth:`save`)."""
        for name in DEFINITION_FIELDS:
            value = getattr(task, name)
            if isinstance(value, enum.Enum):  # the column holds the value, as a form writes it
                value = value.value
            if value is None and not self._meta.get_field(name).null:
                value = ""  # Django keeps "not set" in a text column as ""
            setattr(self, name, value)
        if enabled:
            self.enabled = task.enabled

    @property
    def declared_in_code(self) -> bool:
        return self.code_definition is not None

    def clean(self) -> None:
        """Refuse an invalid schedule, with an error on each bad field."""
        # Fields of the other schedule types are cleared, so that what is stored is what runs.
        if self.schedule_type != ScheduleType.INTERVAL:
            self.interval_seconds = None
        if self.schedule_type != ScheduleType.CRON:
            self.cron_expression = ""
        if self.schedule_type != ScheduleType.ONCE:
            self.run_at = None
        try:
            task = self.to_task()
        except InvalidSchedule as exc:
            # Not for the fields full_clean() leaves out, as a form does those it already
            # refused (an interval below 1 second, say): one error for each, the precise one.
            errors = {k: v for k, v in exc.errors.items() if k not in self._clean_exclude}
            if errors:
                raise ValidationError(errors) from None
            return
        self.cron_expression = task.cron_expression or ""
        try:  # the next two runs, as the scheduler computes them
            task.upcoming(2)
        except Exception as exc:  # whatever the computation raises: refused, not saved broken
            field = _SCHEDULE_FIELD[task.schedule_type]
            raise ValidationError({field: f"The next runs cannot be computed: {exc}"}) from None

    def full_clean(self, exclude: Any = None, *args: Any, **kwargs: Any) -> None:
        self._clean_exclude = set(exclude or ())
        try:
            super().full_clean(exclude, *args, **kwargs)
        finally:
            self._clean_exclude = set()


# The field whose value decides the runs of each schedule type: where a form shows why they
# cannot be computed.
_SCHEDULE_FIELD = {
    ScheduleType.INTERVAL: "interval_seconds",
    ScheduleType.CRON: "cron_expression",
    ScheduleType.ONCE: "run_at",
}


def _rescheduled(row: ScheduledTask, before: Task | None) -> tuple[bool, Any, str | None]:
    """For :meth:`ScheduledTask.save`: whether ``next_run`` is set, its value, and why the task
    is broken (``None``: it is not)."""
    try:
        task = row.to_task()
    except InvalidSchedule as exc:
        return True, None, broken_reason(exc)
    try:
        changed, next_run = rescheduled(task, before)
    except Exception as exc:  # whatever the schedule's computation raises
        return True, None, broken_reason(exc)
    # A broken task has no next run, so saving it computes one again: the user's retry.
    return changed, next_run if changed else row.next_run, None


def _task_or_none(row: ScheduledTask | None) -> Task | None:
    try:
        return None if row is None else row.to_task()
    except InvalidSchedule:
        return None


def notify_schedulers() -> None:
    """Tell running schedulers that the tasks changed: they load them again within a second.

    Without Redis the change is still picked up, by the full reload every
    ``scheduler.RELOAD_EVERY`` seconds.
    """
    try:
        run(calls.bump_schedules(JobQueue().keys))
    except StoreError as exc:
        logger.warning("Could not tell the schedulers that a task changed: %s", exc)


@receiver(post_save, sender=ScheduledTask, dispatch_uid="django_jobs.schedule_saved")
@receiver(post_delete, sender=ScheduledTask, dispatch_uid="django_jobs.schedule_deleted")
def _task_changed(sender: Any, using: str, **kwargs: Any) -> None:
    # After the commit, or a scheduler could load the tasks before the change is visible.
    transaction.on_commit(notify_schedulers, using=using)


class OutboxJob(models.Model):
    """A job made by ``.delay()`` inside ``transaction.atomic()``: written in the same transaction
    as the caller's data, moved to Redis right after the commit, and by the workers when Redis
    did not answer then (see :mod:`django_jobs.outbox`). A rollback leaves no row, so no job."""

    job_id = models.CharField(max_length=64, primary_key=True)
    # The namespace (DJANGO_JOBS['PREFIX'] or a JobQueue's own) the job goes to.
    prefix = models.CharField(max_length=200)
    # The job as Job.to_json() writes it.
    record = models.TextField()
    # Epoch seconds (a float, so that USE_TZ and the database's time zone play no part).
    created = models.FloatField(db_index=True)

    class Meta:
        verbose_name = "job waiting for its commit"
        verbose_name_plural = "jobs waiting for their commit"
        default_permissions = ("view",)

    def __str__(self) -> str:
        return self.job_id


class Job(models.Model):
    """The jobs in Redis, as the admin sees them (:mod:`django_jobs.admin.console`).

    There is no table: the jobs live in Redis (see :class:`django_jobs.Job` for the record).
    This model gives the console its place in the admin and its two permissions, assignable on
    the admin's user and group pages: ``django_jobs.view_job`` to see the dashboard, the job
    lists, the jobs and the workers, and ``django_jobs.change_job`` to act on them (cancel,
    requeue, delete, empty a queue).
    """

    class Meta:
        managed = False
        default_permissions = ("view", "change")
        verbose_name = "job"

    def __str__(self) -> str:
        return f"job {self.pk}"
