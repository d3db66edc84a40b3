"""Edits and broken tasks under running schedulers (issue 19, items 1, 3 and 4).

- A task whose runs cannot be computed is marked broken with its reason, said once in the log,
  and skipped; the scheduler and the other tasks go on.
- Enabling a task again computes its next run from then: the time it was off is not made up for.
- Every write to the table is seen within a second, whoever makes it (``QuerySet.update()``,
  ``bulk_create``, raw SQL): triggers bump a counter in the database (migration 0004).

Real ``runscheduler`` processes share the test database file (``transaction=True``).
"""

import logging
import time
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from django_jobs.models import ScheduledTask as TaskRow
from django_jobs.scheduling.changes import VERSION_TABLE, database_version
from django_jobs.scheduling.database import DatabaseTaskStore
from django_jobs.scheduling.due import next_run_from_now
from django_jobs.scheduling.scheduler import JobScheduler
from django_jobs.scheduling.stores import RunRecord
from django_jobs.scheduling.task import ScheduledTask
from django_jobs.serialization import utcnow
from tests.processes import wait_until
from tests.test_runscheduler import jobs_of, processes, start_scheduler  # noqa: F401 (fixture)

# An interval beyond what a datetime can add: the current code cannot compute the run after
# one (OverflowError), as a cron library that gives up would raise InvalidSchedule. SQLite's
# integer column holds it; PostgreSQL's holds at most 2**31 - 1 seconds (68 years, computable),
# so there a task is broken by a cron expression that cronsim refuses, written past the form.
HUGE = 10**15
ON_SQLITE = connection.vendor == "sqlite"
BROKEN_BY = "OverflowError" if ON_SQLITE else "Bad hour field"


def broken_row(name, **fields):
    """A task whose runs cannot be computed, saved with ``save()`` (not the form's checks)."""
    if ON_SQLITE:
        return task_row(name, HUGE, **fields)
    return task_row(name, schedule_type="cron", cron_expression="0 25 * * *", **fields)


SCHEDULER_COLUMNS = {"last_run", "next_run", "run_count", "broken_reason", "broken_at"}


@pytest.fixture
def group(processes):  # noqa: F811 (the fixture imported above)
    """Processes sharing this test's prefix and its (file) test database."""
    return processes()


def task_row(name, seconds=1, **fields):
    fields.setdefault("args", [name])
    fields.setdefault("schedule_type", "interval")
    if fields["schedule_type"] == "interval":
        fields["interval_seconds"] = seconds
    return TaskRow.objects.create(name=name, job_name="tests.record", **fields)


def version():
    return database_version(TaskRow)


# -- the schedules' version ----------------------------------------------------------------------


@pytest.mark.django_db
def test_every_write_a_user_makes_bumps_the_version_and_the_schedulers_own_do_not():
    start = version()
    row = task_row("ping")
    assert version() == start + 1
    TaskRow.objects.filter(pk=row.pk).update(enabled=False)
    TaskRow.objects.bulk_create(
        [
            TaskRow(
                name="bulk", job_name="tests.record", schedule_type="interval", interval_seconds=5
            )
        ]
    )
    with connection.cursor() as cursor:
        cursor.execute("UPDATE django_jobs_scheduledtask SET interval_seconds = 7")
        after_sql = version()
        cursor.execute("DELETE FROM django_jobs_scheduledtask WHERE name = 'bulk'")
    # SQLite's triggers are per row (two rows updated: two bumps), PostgreSQL's per statement.
    per_update = 2 if connection.vendor == "sqlite" else 1
    assert after_sql == start + 3 + per_update
    assert version() == start + 4 + per_update

    DatabaseTaskStore().record([RunRecord("ping", None, (utcnow(),), utcnow())])
    DatabaseTaskStore().mark_broken("ping", "a reason")
    DatabaseTaskStore().mark_sound("ping")
    assert version() == start + 4 + per_update


@pytest.mark.django_db
def test_the_update_trigger_covers_every_column_but_the_schedulers():
    """A column added later must be added to the trigger (see migration 0004)."""
    triggers = {
        "sqlite": "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s",
        "postgresql": "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = %s::regclass",
    }
    with connection.cursor() as cursor:
        cursor.execute(triggers[connection.vendor], ["django_jobs_scheduledtask"])
        update = [sql for (sql,) in cursor.fetchall() if "AFTER UPDATE OF" in sql]
        cursor.execute(f"SELECT count(*) FROM {VERSION_TABLE}")
        assert cursor.fetchone() == (1,)
    (sql,) = update
    listed = sql.split("UPDATE OF", 1)[1].split(" ON ", 1)[0]
    covered = {column.strip().strip('"') for column in listed.split(",")}
    columns = {f.column for f in TaskRow._meta.concrete_fields}
    assert covered == columns - SCHEDULER_COLUMNS


# -- broken tasks ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_task_saved_with_an_uncomputable_schedule_is_broken_and_a_valid_save_mends_it(caplog):
    caplog.set_level(logging.ERROR, "django_jobs.scheduler")
    row = broken_row("huge", run_immediately=False)  # the first run is one interval away

    row.refresh_from_db()
    assert BROKEN_BY in row.broken_reason
    assert row.broken_at is not None
    assert row.next_run is None
    assert caplog.text.count("task huge is broken and does not run") == 1

    row.schedule_type, row.interval_seconds, row.cron_expression = "interval", 60, ""
    row.save()
    row.refresh_from_db()
    assert (row.broken_reason, row.broken_at) == (None, None)
    assert row.next_run is not None


@pytest.mark.django_db
def test_the_form_refuses_a_schedule_whose_runs_cannot_be_computed():
    row = TaskRow(
        name="huge", job_name="tests.record", schedule_type="interval", interval_seconds=HUGE
    )
    with pytest.raises(ValidationError) as refused:
        row.full_clean()
    message = str(refused.value.message_dict["interval_seconds"])
    assert ("The next runs cannot be computed" if ON_SQLITE else "less than or equal to") in message


@pytest.mark.django_db
def test_the_admin_lists_a_broken_task_and_says_why_on_its_page(admin_client):
    row = broken_row("huge", run_immediately=False)
    task_row("fine", 60)

    listing = admin_client.get("/admin/django_jobs/scheduledtask/?broken=yes").content.decode()
    page = admin_client.get(f"/admin/django_jobs/scheduledtask/{row.pk}/change/").content.decode()

    assert "huge" in listing
    assert ">fine<" not in listing
    assert ">Broken: does not run</strong>" in listing  # under its schedule, with the reason
    assert "This task is broken and does not run" in page
    assert BROKEN_BY in page


@pytest.mark.django_db
def test_a_broken_task_does_not_stop_the_others_and_is_said_once(queue, caplog):
    caplog.set_level(logging.ERROR, "django_jobs.scheduler")
    task_row("ping", 60)
    broken_row("huge")  # on SQLite: computes its first run (now), not the one after
    scheduler = JobScheduler(DatabaseTaskStore(queue), jobs=queue, sync=False)

    fired = [scheduler.run_pending() for _ in range(3)]
    scheduler._version = None  # loaded again: tried again, not said again
    fired.append(scheduler.run_pending())

    assert [f.task for f in fired[0]] == ["ping"]
    assert caplog.text.count("task huge is broken and does not run") == 1
    assert BROKEN_BY in TaskRow.objects.get(name="huge").broken_reason
    assert [j.args for j in jobs_of(queue.prefix)] == [["ping"]]

    TaskRow.objects.filter(name="huge").update(  # bypasses save()
        schedule_type="interval", interval_seconds=60, cron_expression=""
    )
    scheduler._version = None
    (mended,) = scheduler.run_pending()
    assert mended.task == "huge"
    assert TaskRow.objects.get(name="huge").broken_reason is None


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_under_running_schedulers_broken_tasks_are_skipped_and_the_others_run_on_time(group):
    task_row("tick")
    broken_row("huge-later", run_immediately=False)  # broken when saved
    broken_row("huge-now")  # on SQLite: broken when its first run is due
    task_row("bad-cron", 60)
    TaskRow.objects.filter(name="bad-cron").update(
        schedule_type="cron", cron_expression="0 25 * * *"
    )
    procs = [start_scheduler(group), start_scheduler(group)]
    wait_until(lambda: len(jobs_of(group.prefix)) >= 5, message="five runs of tick")
    time.sleep(1)  # each scheduler loaded the tasks again on the marks
    assert [group.stop(p) for p in procs] == [0, 0], group.logs()

    dues = [j.scheduled_at for j in jobs_of(group.prefix)]
    assert {tuple(j.args) for j in jobs_of(group.prefix)} == {("tick",)}
    assert dues == [dues[0] + timedelta(seconds=i) for i in range(len(dues))], "none missed"
    rows = {row.name: row for row in TaskRow.objects.all()}
    assert "Bad hour field '25'" in rows["bad-cron"].broken_reason
    for name in ("huge-now", "huge-later"):
        assert BROKEN_BY in rows[name].broken_reason, name
    logs = group.logs()
    if ON_SQLITE:  # elsewhere broken when saved, by this test
        assert logs.count("task huge-now is broken and does not run") == 1, logs
    assert logs.count("task bad-cron is broken and does not run") == 1, logs
    assert "huge-later is broken" not in logs, "said by the save, not again by the schedulers"


# -- enabling again ------------------------------------------------------------------------------


def test_an_interval_task_enabled_again_keeps_its_rhythm_from_now():
    now = utcnow().replace(microsecond=0)
    task = ScheduledTask("t", "tests.record", "interval", 10, last_run=now - timedelta(seconds=95))

    assert task.calculate_next_run(now) == now - timedelta(seconds=85)  # the overdue one
    assert next_run_from_now(task, now) == now + timedelta(seconds=5)
    assert next_run_from_now(task, now + timedelta(seconds=5)) == now + timedelta(seconds=5)


def test_an_interval_task_enabled_again_just_after_its_rhythm_does_not_run_the_run_it_missed():
    """Enabled again 0.9 s after a due time of its rhythm: that run fell due while it was off
    (runscheduler's chaos test saw it enqueued), the next one is its next run."""
    mark = utcnow().replace(microsecond=0)
    task = ScheduledTask("t", "tests.record", "interval", 2, last_run=mark - timedelta(seconds=2))
    enabled_at = mark + timedelta(seconds=0.9)

    assert next_run_from_now(task, enabled_at) == mark + timedelta(seconds=2)
    assert next_run_from_now(task, mark) == mark, "a due time that is now is not missed"
    never_ran = ScheduledTask("new", "tests.record", "interval", 2)
    assert next_run_from_now(never_ran, enabled_at) == mark, "a new task runs at once"


@pytest.mark.django_db
def test_an_edit_whose_next_run_is_the_one_before_is_kept_by_a_scheduler_that_looks_late(queue):
    """Halving an interval of 4 s at 12:00:00.3, the run due at 12:00:01 is the next one both
    ways; saved, the task's next run does not change. A scheduler that loads the edit at
    12:00:02.5 (busy, or paused for a moment) must not take the unchanged next run for a write
    that bypassed save() and compute it afresh from then: that dropped the run due at 12:00:01
    (runscheduler's chaos test saw it lost)."""
    time.sleep(1.05 - time.time() % 1)  # early in a second: the edit is made before the mark
    mark = utcnow().replace(microsecond=0) + timedelta(seconds=1)
    row = task_row("halved", 4)
    TaskRow.objects.filter(pk=row.pk).update(last_run=mark - timedelta(seconds=4), next_run=mark)
    scheduler = JobScheduler(DatabaseTaskStore(queue), jobs=queue, sync=False)
    assert scheduler.run_pending(mark - timedelta(seconds=0.5)) == []  # loaded; none due

    row.refresh_from_db()
    row.interval_seconds = 2
    row.full_clean()
    row.save()
    assert row.next_run == mark, "the first run of the new rhythm from now is the one before"
    fired = scheduler.run_pending(mark + timedelta(seconds=1.5))

    assert [f.due for f in fired] == [mark]
    assert [j.scheduled_at for j in jobs_of(queue.prefix)] == [f.due for f in fired]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_task_off_for_11_seconds_gets_one_run_when_enabled_not_ten(group, admin_client):
    """Switched off and on with save() (the admin's action), and with QuerySet.update(); the
    latter under the policy that makes up for every missed run."""
    task_row("saved")
    task_row("updated", missed_run_policy="all")
    start_scheduler(group)
    wait_until(lambda: len(jobs_of(group.prefix)) >= 4, message="runs of both tasks")

    saved = TaskRow.objects.get(name="saved")
    saved.enabled = False
    saved.save()
    TaskRow.objects.filter(name="updated").update(enabled=False)
    off = utcnow()
    time.sleep(11)
    on = utcnow()
    enabled = admin_client.post(
        "/admin/django_jobs/scheduledtask/",
        {"action": "enable_tasks", "_selected_action": [saved.pk]},
    )
    assert enabled.status_code == 302
    TaskRow.objects.filter(name="updated").update(enabled=True)
    time.sleep(2.5)
    assert group.stop(group.procs[0]) == 0

    logs = group.logs()
    for name in ("saved", "updated"):
        dues = [j.scheduled_at for j in jobs_of(group.prefix) if j.args == [name]]
        replayed = [d for d in dues if off + timedelta(seconds=2) < d < on - timedelta(seconds=1)]
        assert replayed == [], f"{name}: the time it was off was made up for\n{logs}"
        assert 1 <= len([d for d in dues if d >= on - timedelta(seconds=1)]) <= 4, logs
    assert "were missed" not in logs


# -- edits that bypass save() ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_edits_that_bypass_save_are_obeyed_within_a_second(group):
    task_row("later", 3600, run_immediately=False)
    task_row("raw", 3600, run_immediately=False)
    task_row("doomed")
    start_scheduler(group)
    wait_until(lambda: any(j.args == ["doomed"] for j in jobs_of(group.prefix)), message="a run")

    far = TaskRow.objects.get(name="later").next_run + timedelta(seconds=5)

    def next_run(name):  # None for a moment: cleared, then computed from now
        return TaskRow.objects.get(name=name).next_run or far

    def obeyed(check, what):
        began = time.monotonic()
        try:
            wait_until(check, timeout=10, message=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{group.logs()}") from None
        return time.monotonic() - began

    TaskRow.objects.filter(name="later").update(interval_seconds=2)
    took = {"QuerySet.update": obeyed(lambda: next_run("later") < far, "the new interval")}
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE django_jobs_scheduledtask SET interval_seconds = 2 WHERE name = 'raw'"
        )
    took["SQL UPDATE"] = obeyed(lambda: next_run("raw") < far, "the raw update")
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM django_jobs_scheduledtask WHERE name = 'doomed'")
    deleted = utcnow()
    TaskRow.objects.bulk_create(
        [
            TaskRow(
                name="bulk",
                job_name="tests.record",
                schedule_type="interval",
                interval_seconds=1,
                args=["bulk"],
            )
        ]
    )
    took["bulk_create"] = obeyed(
        lambda: any(j.args == ["bulk"] for j in jobs_of(group.prefix)), "a run of the new task"
    )
    time.sleep(1.5)
    assert group.stop(group.procs[0]) == 0

    late = [
        j.created_at
        for j in jobs_of(group.prefix)
        if j.args == ["doomed"] and j.created_at > deleted + timedelta(seconds=1)
    ]
    assert late == [], f"runs after the DELETE\n{group.logs()}"
    assert max(took.values()) < 2.0, took  # within a second; a margin for a loaded machine
