"""The admin of scheduled tasks: the list, its actions, the form's errors and the preview."""

import re
from datetime import UTC, datetime, timedelta
from html import escape

import pytest
from django.urls import reverse

from django_jobs import JobPriority
from django_jobs.models import ScheduledTask as TaskRow
from django_jobs.serialization import utcnow

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:django_jobs_scheduledtask_changelist"
ADD = "admin:django_jobs_scheduledtask_add"


def change_url(row):
    return reverse("admin:django_jobs_scheduledtask_change", args=[row.pk])


def task(name="ping", **fields):
    values = {
        "job_name": "tests.record",
        "schedule_type": "interval",
        "interval_seconds": 60,
        "args": [name],
        **fields,
    }
    return TaskRow.objects.create(name=name, **values)


def form_data(**fields):
    """What the add form posts for a valid interval task, changed by ``fields``."""
    data = {
        "name": "ping",
        "description": "",
        "job_name": "tests.record",
        "args": "[1]",
        "kwargs": "{}",
        "enabled": "on",
        "schedule_type": "interval",
        "interval_seconds": "60",
        "run_immediately": "on",
        "cron_expression": "",
        "run_at_0": "",
        "run_at_1": "",
        "timezone": "",
        "missed_run_policy": "catch_up",
        "priority": "",
        "queue": "",
    }
    data.update(fields)
    return {k: v for k, v in data.items() if v is not None}


def errors(response):
    """The form's errors by field, as the page shows them."""
    form = response.context["adminform"].form
    return {name: list(messages) for name, messages in form.errors.items()}


@pytest.fixture
def jobs_admin(admin_client, jobs_settings):
    return admin_client


# -- the list --------------------------------------------------------------------------------------


def test_the_list_shows_each_task_with_its_schedule_in_words(jobs_admin):
    task(run_count=0)
    task(
        "nightly",
        schedule_type="cron",
        interval_seconds=None,
        cron_expression="30 2 * * *",
        timezone="Europe/Berlin",
    )
    task(
        "launch",
        schedule_type="once",
        interval_seconds=None,
        run_at=datetime(2030, 1, 1, tzinfo=UTC),
    )

    response = jobs_admin.get(reverse(CHANGELIST))

    assert response.status_code == 200
    page = response.content.decode()
    for header in ("Name", "Job", "Schedule", "Enabled", "Last run", "Next run", "Run count"):
        assert f">{header}</a>" in page or f">{header}</span>" in page, header
    assert "Every minute" in page
    assert "At 02:30 every day (Europe/Berlin)" in page
    assert "Once, at 2030-01-01 00:00:00 (UTC)" in page
    assert 'name="form-0-enabled"' in page, "enabled is switchable in the list"
    assert "No scheduler is running" in page


def test_switching_a_task_off_in_the_list_clears_its_next_run(jobs_admin):
    row = task()
    assert row.next_run is not None

    response = jobs_admin.post(
        reverse(CHANGELIST),
        {
            "form-TOTAL_FORMS": "1",
            "form-INITIAL_FORMS": "1",
            "form-0-id": str(row.pk),
            "_save": "Save",
        },
    )

    assert response.status_code == 302
    row.refresh_from_db()
    assert (row.enabled, row.next_run) == (False, None)


def run_action(client, action, *rows, **extra):
    return client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [str(r.pk) for r in rows], **extra},
        follow=True,
    )


def test_disable_and_enable_actions(jobs_admin):
    ping, other = task(), task("other")

    response = run_action(jobs_admin, "disable_tasks", ping, other)

    assert "Disabled 2 tasks." in response.content.decode()
    assert not TaskRow.objects.filter(enabled=True).exists()
    assert not TaskRow.objects.filter(next_run__isnull=False).exists()
    response = run_action(jobs_admin, "enable_tasks", ping)
    assert "Enabled 1 task." in response.content.decode()
    ping.refresh_from_db()
    assert ping.enabled
    assert ping.next_run is not None


def test_run_now_asks_first_then_enqueues_the_job_at_once_as_a_run_of_the_task(jobs_admin, queue):
    row = task(args=["now"], kwargs={}, priority=JobPriority.HIGH.value, queue="emails")
    ghost = task("ghost", job_name="gone.job")

    asked = run_action(jobs_admin, "run_now", row, ghost)
    assert "Yes, run them now" in asked.content.decode()
    assert queue.list_jobs("pending") == []
    response = run_action(jobs_admin, "run_now", row, ghost, post="yes")

    shown = [str(m) for m in response.context["messages"]]
    (job,) = queue.list_jobs("pending")
    link = reverse("admin:django_jobs_job_change", args=[job.id])
    assert f"ping: enqueued job <a href='{link}'>{job.id}</a>." in shown
    assert job.meta == {"scheduled_task": "ping"}
    assert [run.id for run in queue.task_runs("ping")] == [job.id]
    page = jobs_admin.get(reverse("admin:django_jobs_scheduledtask_change", args=[row.pk]))
    assert f"href='{link}'" in page.content.decode(), "the task's page links its recent runs"
    assert (job.name, job.args, job.priority, job.queue) == (
        "tests.record",
        ["now"],
        JobPriority.HIGH,
        "emails",
    )
    assert "ghost: no job named 'gone.job' is registered." in shown
    row.refresh_from_db()
    assert (row.run_count, row.last_run) == (0, None), "a run now is not a run of the schedule"


# -- the form --------------------------------------------------------------------------------------


def test_a_valid_task_is_saved_with_its_next_run(jobs_admin):
    response = jobs_admin.post(
        reverse(ADD),
        form_data(
            name="nightly",
            schedule_type="cron",
            cron_expression="  30 2 * * *",
            interval_seconds="",
            timezone="Europe/Berlin",
            priority="3",
            queue="reports",
        ),
    )

    assert response.status_code == 302, errors(response)
    row = TaskRow.objects.get()
    assert row.cron_expression == "30 2 * * *"
    assert row.interval_seconds is None, "fields of other schedule types are cleared"
    assert (row.priority, row.queue, row.args) == (3, "reports", [1])
    assert row.next_run > utcnow()
    assert not row.declared_in_code


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        (
            {"schedule_type": "cron", "cron_expression": "0 25 * * *"},
            "cron_expression",
            "Bad hour field '25' in the cron expression",
        ),
        (
            {"schedule_type": "cron", "cron_expression": "* * * * MON#9"},
            "cron_expression",
            "Bad day-of-week field",
        ),
        (
            {"schedule_type": "cron", "cron_expression": "* * *"},
            "cron_expression",
            "A cron expression has 5 fields",
        ),
        ({"schedule_type": "cron"}, "cron_expression", "Enter a cron expression"),
        ({"interval_seconds": "0"}, "interval_seconds", "The interval must be at least 1 second."),
        ({"interval_seconds": "-5"}, "interval_seconds", "The interval must be at least 1 second."),
        ({"interval_seconds": ""}, "interval_seconds", "An interval task needs a whole number"),
        ({"schedule_type": "once"}, "run_at", "A one-time task needs a time to run at."),
        ({"job_name": "nope.job"}, "job_name", "No job named 'nope.job' is registered"),
        ({"args": '{"a": 1}'}, "args", "Enter a JSON list"),
        ({"args": "[1,"}, "args", "Enter a valid JSON."),
        ({"kwargs": "[1]"}, "kwargs", "Enter a JSON object"),
        ({"timezone": "Mars/Olympus"}, "timezone", "Unknown time zone 'Mars/Olympus'"),
        ({"queue": "nope"}, "queue", "Select a valid choice."),
    ],
)
def test_a_bad_field_is_refused_with_an_error_on_that_field(jobs_admin, fields, field, message):
    response = jobs_admin.post(reverse(ADD), form_data(**fields))

    assert response.status_code == 200
    assert not TaskRow.objects.exists()
    found = errors(response)
    assert list(found) == [field]
    (shown,) = found[field]
    assert message in shown
    page = response.content.decode()
    assert '<ul class="errorlist' in page
    assert escape(shown) in page


def test_a_task_whose_job_is_gone_shows_it_and_asks_for_another(jobs_admin):
    row = task(job_name="gone.job")

    page = jobs_admin.get(change_url(row)).content.decode()
    assert "gone.job (not registered)" in page
    response = jobs_admin.post(change_url(row), form_data())
    assert response.status_code == 302, errors(response)


def test_the_change_page_previews_the_next_five_runs_in_the_tasks_time_zone(jobs_admin):
    row = task(
        "nightly",
        schedule_type="cron",
        interval_seconds=None,
        cron_expression="30 2 * * *",
        timezone="Europe/Berlin",
    )

    page = jobs_admin.get(change_url(row)).content.decode()

    assert "Next 5 runs" in page
    runs = re.findall(r"<li>(\w{3} \d{4}-\d\d-\d\d 02:30:00 CES?T) ", page)
    assert len(runs) == 5, page
    assert "In Europe/Berlin:" in page


def test_the_preview_of_a_one_time_task_that_ran(jobs_admin):
    run_at = utcnow().replace(microsecond=0) - timedelta(days=1)
    row = task("launch", schedule_type="once", interval_seconds=None, run_at=run_at)
    TaskRow.objects.filter(pk=row.pk).update(last_run=run_at, next_run=None, run_count=1)

    page = jobs_admin.get(change_url(row)).content.decode()

    assert "None: a one-time task runs only once." in page


def test_saving_in_the_admin_keeps_the_schedulers_record(jobs_admin):
    row = task()
    last = utcnow().replace(microsecond=0)
    TaskRow.objects.filter(pk=row.pk).update(
        last_run=last, next_run=last + timedelta(minutes=1), run_count=7
    )

    response = jobs_admin.post(change_url(row), form_data(description="Edited."))

    assert response.status_code == 302, errors(response)
    row.refresh_from_db()
    assert row.description == "Edited."
    assert (row.last_run, row.next_run, row.run_count) == (last, last + timedelta(minutes=1), 7)


def test_changing_the_schedule_in_the_admin_computes_the_next_run_afresh(jobs_admin):
    row = task()
    TaskRow.objects.filter(pk=row.pk).update(next_run=utcnow() + timedelta(days=3))

    response = jobs_admin.post(change_url(row), form_data(interval_seconds="30"))

    assert response.status_code == 302, errors(response)
    row.refresh_from_db()
    assert row.next_run < utcnow() + timedelta(minutes=1)


def test_no_warning_while_a_scheduler_is_running(jobs_admin, queue, redis_client):
    redis_client.zadd(queue.keys.schedulers, {"host.1": datetime.now(UTC).timestamp()})

    page = jobs_admin.get(reverse(CHANGELIST)).content.decode()

    assert "No scheduler is running" not in page
