"""The admin of periodic tasks: list, switch on and off, run now, edit with checked fields and a
preview of the next runs."""

from __future__ import annotations

import zoneinfo
from datetime import datetime
from functools import cache
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.formats import get_format
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timesince, timeuntil

from django_jobs import validation
from django_jobs.admin.display import breadcrumbs_context, first_line
from django_jobs.conf import jobs_settings
from django_jobs.exceptions import StoreError
from django_jobs.models import ScheduledTask
from django_jobs.queue import JobQueue
from django_jobs.registry import registry
from django_jobs.scheduling.changes import refused
from django_jobs.scheduling.errors import InvalidSchedule
from django_jobs.scheduling.scheduler import running_schedulers
from django_jobs.scheduling.task import SCHEDULE_FIELDS
from django_jobs.scheduling.ticks import fire_run
from django_jobs.serialization import utcnow
from django_jobs.store.errors import trouble


@cache
def _time_zones() -> list[str]:
    return sorted(zoneinfo.available_timezones())


class JobNameField(forms.ChoiceField):
    """A choice of the registered jobs, with an error naming an unknown one."""

    default_error_messages = {  # noqa: RUF012 (Django's convention)
        "invalid_choice": "No job named %(value)r is registered. Jobs are registered with @job "
        "in the jobs.py module of an installed app."
    }


class ScheduledTaskForm(forms.ModelForm):
    job_name = JobNameField(label="Job", help_text="The registered job to run.")
    interval_seconds = forms.IntegerField(
        label="Interval (seconds)",
        required=False,
        min_value=1,
        error_messages={"min_value": "The interval must be at least 1 second."},
        help_text="Interval tasks: seconds from one run to the next.",
    )
    timezone = forms.ChoiceField(
        label="Time zone",
        required=False,
        error_messages={"invalid_choice": "Unknown time zone %(value)r."},
        help_text="Cron tasks follow this time zone through DST changes, as Debian cron does.",
    )
    queue = forms.ChoiceField(required=False)

    class Meta:
        model = ScheduledTask
        fields = "__all__"  # noqa: DJ007 (every editable field is on the form)
        widgets = {  # noqa: RUF012
            "description": forms.Textarea(attrs={"rows": 2, "cols": 60}),
            "args": forms.Textarea(attrs={"rows": 2, "cols": 60}),
            "kwargs": forms.Textarea(attrs={"rows": 2, "cols": 60}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        jobs = registry.names()
        current = self.instance.job_name if self.instance.pk else None
        choices = [("", "---------")] + [(name, name) for name in jobs]
        if current and current not in jobs:
            choices.append((current, f"{current} (not registered)"))
        self.fields["job_name"].choices = choices
        default = settings.TIME_ZONE or "UTC"
        self.fields["timezone"].choices = [("", f"Default ({default})")] + [
            (name, name) for name in _time_zones()
        ]
        priority = self.fields["priority"]
        priority.choices = [("", "The job's own priority"), *list(priority.choices)[1:]]
        priority.help_text = ""
        queue_choices = [("", "The job's own queue")] + [(q, q) for q in jobs_settings.QUEUES]
        if self.instance.queue and self.instance.queue not in jobs_settings.QUEUES:
            queue_choices.append((self.instance.queue, f"{self.instance.queue} (not configured)"))
        self.fields["queue"].choices = queue_choices

    def clean_job_name(self) -> str:
        name: str = self.cleaned_data["job_name"]
        if name not in registry:
            raise forms.ValidationError(
                "No job named %(name)r is registered. Registered jobs: %(jobs)s.",
                params={"name": name, "jobs": ", ".join(registry.names()) or "(none)"},
                code="unregistered",
            )
        return name

    def clean_args(self) -> list[Any]:
        value = self.cleaned_data.get("args")
        if value is None:
            return []
        if not isinstance(value, list):
            raise forms.ValidationError('Enter a JSON list, e.g. [42, "a"].', code="not_a_list")
        return value

    def clean_kwargs(self) -> dict[str, Any]:
        value = self.cleaned_data.get("kwargs")
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise forms.ValidationError(
                'Enter a JSON object, e.g. {"user_id": 42}.', code="not_an_object"
            )
        return value

    def clean(self) -> dict[str, Any] | None:
        """The arguments must fit the job's parameters, as ``.delay()`` requires."""
        cleaned = super().clean()
        job_function = registry.get(self.cleaned_data.get("job_name") or "")
        if job_function is not None and not {"args", "kwargs"} & set(self.errors):
            try:
                validation.arguments(
                    job_function.name,
                    job_function.func,
                    self.cleaned_data.get("args") or [],
                    self.cleaned_data.get("kwargs") or {},
                )
            except TypeError as exc:
                raise forms.ValidationError(str(exc), code="arguments") from None
        return cleaned

    def clean_queue(self) -> str:
        queue: str = self.cleaned_data.get("queue") or ""
        if queue:  # "": the job's own queue
            try:
                validation.queue_name(queue)
            except ValueError as exc:
                raise forms.ValidationError(str(exc), code="unknown_queue") from None
        return queue


def _when(task: ScheduledTask, moment: datetime | None) -> str:
    """``moment`` as the admin shows times, but in the task's time zone, named when it is not the
    current one: ``"Sept. 30, 2025, 2:30 a.m. CEST"``."""
    if moment is None:
        return "-"
    current = timezone.get_current_timezone()
    try:
        tz = task.to_task().tzinfo
    except InvalidSchedule:
        tz = current
    local = moment.astimezone(tz)
    shown = date_format(local, get_format("DATETIME_FORMAT"))
    if str(tz) != str(current):
        shown += f" {local.tzname()}"
    return shown


def _relative(task: ScheduledTask, moment: datetime | None) -> str:
    """``"in 4 minutes"`` or ``"2 hours ago"``, with the time itself as a tooltip."""
    if moment is None:
        return "-"
    now = utcnow()
    if abs((moment - now).total_seconds()) < 60:
        text = "now"
    elif moment > now:
        text = f"in {timeuntil(moment, now, depth=1)}"
    else:
        text = f"{timesince(moment, now, depth=1)} ago"
    return format_html('<span title="{}">{}</span>', _when(task, moment), text)


# How many of a task's last runs its page shows.
RECENT_RUNS = 10

# Read only, shown on the change page (not when adding a task).
RUN_FIELDS = (
    "last_run_display",
    "next_run_display",
    "run_count",
    "recent_runs",
    "origin",
    "created_at",
    "updated_at",
)


class BrokenFilter(admin.SimpleListFilter):
    """Tasks whose next run cannot be computed (``broken_reason``), or the others."""

    title = "broken"
    parameter_name = "broken"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in ("yes", "no"):
            return queryset.filter(broken_reason__isnull=self.value() == "no")
        return queryset


@admin.register(ScheduledTask)
class ScheduledTaskAdmin(admin.ModelAdmin):
    form = ScheduledTaskForm
    list_display = (
        "name",
        "job_name",
        "schedule",
        "enabled",
        "last_run_ago",
        "next_run_in",
        "run_count",
    )
    list_display_links = ("name",)
    list_editable = ("enabled",)
    list_filter = ("enabled", BrokenFilter, "schedule_type", "missed_run_policy")
    search_fields = ("name", "job_name", "description")
    actions = ("enable_tasks", "disable_tasks", "run_now")
    readonly_fields = ("upcoming_runs", *RUN_FIELDS)
    fieldsets = (
        (None, {"fields": ("name", "description", "job_name", "args", "kwargs", "enabled")}),
        ("Schedule", {"fields": (*SCHEDULE_FIELDS, "missed_run_policy", "upcoming_runs")}),
        ("Job options", {"fields": ("priority", "queue")}),
        ("Runs", {"fields": RUN_FIELDS}),
    )

    class Media:
        js = ("django_jobs/scheduledtask_form.js",)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:  # nothing ran yet
            return [fieldset for fieldset in fieldsets if fieldset[1]["fields"] != RUN_FIELDS]
        return fieldsets

    # -- columns and read-only fields ---------------------------------------------------------

    @admin.display(description="schedule", ordering="schedule_type")
    def schedule(self, obj: ScheduledTask) -> str:
        try:
            described = obj.to_task().describe()
        except InvalidSchedule as exc:
            described = f"Invalid: {exc}"
        if obj.broken_reason is None:
            return described
        # Here, in the list's first columns, a broken task stands out; the reason as a tooltip.
        return format_html(
            '{}<br><strong style="color: var(--error-fg)" title="{}">Broken: does not run</strong>',
            described,
            obj.broken_reason,
        )

    @admin.display(description="last run", ordering="last_run")
    def last_run_display(self, obj: ScheduledTask) -> str:
        return _when(obj, obj.last_run)

    @admin.display(description="next run", ordering="next_run")
    def next_run_display(self, obj: ScheduledTask) -> str:
        if not obj.enabled:
            return "- (disabled)"
        if obj.broken_reason is not None:
            return "- (broken)"
        return _when(obj, obj.next_run)

    @admin.display(description="last run", ordering="last_run")
    def last_run_ago(self, obj: ScheduledTask) -> str:
        return _relative(obj, obj.last_run)

    @admin.display(description="next run", ordering="next_run")
    def next_run_in(self, obj: ScheduledTask) -> str:
        if not obj.enabled:
            return "- (disabled)"
        return "- (broken)" if obj.broken_reason is not None else _relative(obj, obj.next_run)

    @admin.display(description="declared in")
    def origin(self, obj: ScheduledTask) -> str:
        if obj.declared_in_code:
            return (
                "DJANGO_JOBS['SCHEDULES']. Changes made here are kept when the scheduler "
                "restarts; deleting the task here lasts until then."
            )
        return "The admin."

    @admin.display(description="next 5 runs")
    def upcoming_runs(self, obj: ScheduledTask | None) -> str:
        if obj is None or obj.pk is None:
            return "Shown once the task is saved."
        now = utcnow()
        try:
            task = obj.to_task()
            times = task.upcoming(5, now)
        except Exception as exc:  # whatever the schedule's computation raises
            return f"None: {exc}"
        if not times:
            return "None: a one-time task runs only once." if obj.last_run else "None."
        tz = task.tzinfo
        rows = []
        for moment in times:
            local = moment.astimezone(tz)
            if moment > now:
                relative = f"in {timeuntil(moment, now)}"
            else:
                relative = f"{timesince(moment, now)} ago, due now"
            rows.append((local.strftime("%a %Y-%m-%d %H:%M:%S %Z"), relative))
        items = format_html_join("", "<li>{} <span class='quiet'>({})</span></li>", rows)
        heading = "" if obj.enabled else "Disabled; when enabled, it would run "
        return format_html(
            "{}{}:<ol style='margin: 0.3em 0 0; padding-left: 1.5em'>{}</ol>",
            heading,
            f"in {tz}" if heading else f"In {tz}",
            items,
        )

    @admin.display(description="recent runs")
    def recent_runs(self, obj: ScheduledTask) -> str:
        """The jobs of the task's last runs (kept for ``JOB_TTL``), each linked to its page in
        the jobs console, with its outcome."""
        try:
            runs = JobQueue().task_runs(obj.name, RECENT_RUNS)
        except StoreError as exc:
            return trouble(exc)
        if not runs:
            return "None kept (runs are kept for a week, DJANGO_JOBS['JOB_TTL'])."
        rows = [
            (
                reverse("admin:django_jobs_job_change", args=[job.id]),
                _when(obj, job.scheduled_at or job.created_at),
                job.status.value,
                first_line(job.error),
            )
            for job in runs
        ]
        items = format_html_join(
            "", "<li><a href='{}'>{}</a>: {} <span class='quiet'>{}</span></li>", rows
        )
        return format_html("<ol style='margin: 0; padding-left: 1.5em'>{}</ol>", items)

    # -- actions ------------------------------------------------------------------------------

    def _set_enabled(self, request: HttpRequest, queryset: QuerySet[Any], enabled: bool) -> None:
        changed = 0
        for task in queryset.filter(enabled=not enabled):
            task.enabled = enabled
            task.save()  # computes or clears next_run and tells the schedulers
            changed += 1
        word = "Enabled" if enabled else "Disabled"
        self.message_user(request, f"{word} {changed} task{'s' if changed != 1 else ''}.")

    @admin.action(description="Enable selected tasks", permissions=["change"])
    def enable_tasks(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable selected tasks", permissions=["change"])
    def disable_tasks(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._set_enabled(request, queryset, False)

    @admin.action(description="Run selected tasks now", permissions=["change"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse | None:
        """Enqueue each task's job at once, after a confirmation page. The run is one of the
        task's (its job names the task and shows in its recent runs) but its schedule, last
        run and run count are unchanged."""
        if request.POST.get("post") != "yes":
            crumbs = [
                ("Scheduled tasks", reverse("admin:django_jobs_scheduledtask_changelist")),
                ("Run now", ""),
            ]
            context = {
                **breadcrumbs_context(self.admin_site.each_context(request), self.opts, crumbs),
                "title": "Run these tasks now?",
                "tasks": queryset,
                "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
            }
            return TemplateResponse(
                request, "admin/django_jobs/scheduledtask/run_now_confirmation.html", context
            )
        jobs = JobQueue()
        for task in queryset:
            if task.job_name not in registry:
                self.message_user(
                    request,
                    f"{task.name}: no job named {task.job_name!r} is registered.",
                    messages.ERROR,
                )
                continue
            try:
                fired = fire_run(jobs, task.to_task(), utcnow())
            except (StoreError, InvalidSchedule, ValueError, TypeError) as exc:
                self.message_user(request, f"{task.name}: not enqueued: {exc}", messages.ERROR)
                continue
            link = reverse("admin:django_jobs_job_change", args=[fired.job_id])
            self.message_user(
                request,
                format_html("{}: enqueued job <a href='{}'>{}</a>.", task.name, link, fired.job_id),
            )
        return None

    # -- status -------------------------------------------------------------------------------

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        task = self.get_object(request, object_id) if request.method == "GET" else None
        if task is not None and task.broken_reason is not None:
            since = _when(task, task.broken_at)
            self.message_user(
                request,
                f"This task is broken and does not run (since {since}): {task.broken_reason}. "
                + (  # Redis refused its tick: the scheduler tries it again (RELOAD_EVERY)
                    "Mend or delete the Redis key it names: it is tried again within 30 s."
                    if refused(task.broken_reason)
                    else "Correct its schedule and save it."
                ),
                messages.ERROR,
            )
        return super().change_view(request, object_id, form_url, extra_context)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if request.method == "GET":
            try:
                if not running_schedulers():
                    self.message_user(
                        request,
                        "No scheduler is running: the tasks run only while "
                        "'manage.py runscheduler' does.",
                        messages.WARNING,
                    )
            except StoreError as exc:
                self.message_user(request, trouble(exc), messages.WARNING)
        return super().changelist_view(request, extra_context)
