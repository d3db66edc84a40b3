"""The scheduler engine in this process, on real Redis: registering tasks, enqueueing each due run
once, missed runs, the database store and its sync of DJANGO_JOBS['SCHEDULES'], system checks.

Processes running ``manage.py runscheduler`` are tested in test_runscheduler.py.
"""

import asyncio
import importlib
import logging
import threading
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim
from django.core.checks import run_checks
from django.db import DatabaseError, connection

from django_jobs import JobPriority
from django_jobs.models import ScheduledTask as TaskRow
from django_jobs.scheduling.database import DatabaseTaskStore
from django_jobs.scheduling.scheduler import JobScheduler, afire_tick, fire_tick
from django_jobs.scheduling.stores import MemoryTaskStore, RunRecord
from django_jobs.scheduling.task import ScheduledTask
from django_jobs.serialization import utcnow
from tests.census import assert_census

NOW = datetime(2024, 1, 15, 12, 0, 0, tzinfo=UTC)


def every(seconds=60, name="ping", job="tests.record", **fields):
    return ScheduledTask(name, job, "interval", seconds, args=[name], **fields)


def cron(expression, name="nightly", job="tests.record", **fields):
    return ScheduledTask(name, job, "cron", cron_expression=expression, args=[name], **fields)


def pending(queue):
    """The jobs waiting in Redis, ready or delayed, by due time."""
    return sorted(queue.list_jobs("pending", limit=10_000), key=lambda j: j.scheduled_at)


@pytest.fixture
def scheduler(queue):
    scheduler = JobScheduler(jobs=queue, sync=False)
    yield scheduler
    scheduler.stop(timeout=10)


# -- registering -----------------------------------------------------------------------------------


def test_a_new_scheduler_has_no_tasks_and_is_not_running(scheduler):
    assert scheduler.get_all_tasks() == []
    assert not scheduler.running
    assert isinstance(scheduler.store, MemoryTaskStore)


def test_register_interval_cron_and_one_time_tasks(scheduler):
    before = utcnow().replace(microsecond=0)
    ping = scheduler.register(every(3600, priority=JobPriority.HIGH))
    nightly = scheduler.register(cron("0 2 * * *"))
    event = scheduler.register(
        ScheduledTask("event", "tests.record", "once", run_at=NOW + timedelta(days=3650))
    )

    assert before <= ping.next_run <= utcnow(), "an interval task runs at once"
    assert nightly.next_run.hour == 2
    assert nightly.next_run > utcnow()
    assert event.next_run == NOW + timedelta(days=3650)
    assert [t.name for t in scheduler.get_all_tasks()] == ["event", "nightly", "ping"]
    assert scheduler.get_task("ping") == ping
    assert scheduler.get_task("missing") is None


def test_a_task_whose_job_is_not_registered_is_refused(scheduler):
    with pytest.raises(ValueError, match=r"no job named 'nope\.job' is registered"):
        scheduler.register(every(job="nope.job"))

    assert scheduler.get_all_tasks() == []


def test_unregister(scheduler):
    scheduler.register(every())

    assert scheduler.unregister("ping") is True
    assert scheduler.unregister("ping") is False
    assert scheduler.get_task("ping") is None


def test_disable_stops_scheduling_and_enable_computes_the_next_run_afresh(scheduler, queue):
    scheduler.register(cron("*/5 * * * *"))

    assert scheduler.disable("nightly") is True
    assert scheduler.get_task("nightly").next_run is None
    assert scheduler.run_pending(utcnow() + timedelta(hours=1)) == []
    assert scheduler.enable("nightly") is True
    next_run = scheduler.get_task("nightly").next_run
    assert utcnow() < next_run <= utcnow() + timedelta(minutes=5)
    assert next_run.minute % 5 == 0
    assert scheduler.enable("missing") is False
    assert scheduler.disable("missing") is False
    assert pending(queue) == []


def test_registering_again_changes_the_task_and_keeps_its_runs(scheduler):
    scheduler.register(every(60))
    scheduler.run_pending()

    changed = scheduler.register(every(120, description="slower"))

    assert changed.interval_seconds == 120
    assert changed.run_count == 1
    assert changed.next_run == changed.last_run + timedelta(seconds=120)


# -- enqueueing ------------------------------------------------------------------------------------


def test_a_due_run_enqueues_the_tasks_job_with_its_arguments_priority_and_queue(
    scheduler, queue, redis_client
):
    scheduler.register(
        ScheduledTask(
            "report",
            "tests.testapp.jobs.add",
            "interval",
            60,
            args=["a"],
            kwargs={"b": [2]},
            priority="critical",
            queue="emails",
        )
    )
    due = scheduler.get_task("report").next_run

    (fired,) = scheduler.run_pending()

    assert (fired.task, fired.due, fired.enqueued) == ("report", due, True)
    job = queue.get_job(fired.job_id)
    assert (job.name, job.args, job.kwargs) == ("tests.testapp.jobs.add", ["a"], {"b": [2]})
    assert (job.priority, job.queue) == (JobPriority.CRITICAL, "emails")
    assert job.scheduled_at == due, "the job records which run it is"
    assert_census(queue, redis_client, {job.id: "queue:emails:critical"})
    task = scheduler.get_task("report")
    assert (task.last_run, task.next_run, task.run_count) == (due, due + timedelta(minutes=1), 1)


def test_without_priority_and_queue_the_jobs_own_options_apply(scheduler, queue):
    scheduler.register(every(name="report", job="tests.report"))

    (fired,) = scheduler.run_pending()

    job = queue.get_job(fired.job_id)
    assert (job.priority, job.queue, job.max_retries, job.timeout) == (
        JobPriority.HIGH,
        "reports",
        1,
        30,
    )


def test_nothing_is_enqueued_before_the_due_time(scheduler, queue):
    scheduler.register(every(60, run_immediately=False))

    assert scheduler.run_pending() == []
    assert pending(queue) == []


def test_each_due_time_is_enqueued_once_however_many_schedulers_fire_it(queue, redis_client):
    """Ten schedulers, each with its own copy of the task, fire the same run at once."""
    task = every(60, next_run=NOW)
    schedulers = [JobScheduler(jobs=queue, sync=False) for _ in range(10)]
    for scheduler in schedulers:
        scheduler.store.add(task)
    start = threading.Barrier(len(schedulers))
    results = []

    def fire(scheduler):
        start.wait()
        results.extend(scheduler.run_pending(NOW + timedelta(seconds=1)))

    threads = [threading.Thread(target=fire, args=(s,)) for s in schedulers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 10
    assert {f.job_id for f in results} == {results[0].job_id}
    assert sum(f.enqueued for f in results) == 1
    assert_census(queue, redis_client, {results[0].job_id: "queue:default:normal"})
    for scheduler in schedulers:
        assert scheduler.get_task("ping").run_count == 1


def test_fire_tick_claims_the_tick_and_enqueues_in_one_step(queue, redis_client):
    due = NOW
    first = queue.build_job("tests.record", ["a"], scheduled_at=due)
    second = queue.build_job("tests.record", ["b"], scheduled_at=due)

    assert fire_tick(queue, "ping", due, first, 120) == first.id
    assert fire_tick(queue, "ping", due, second, 120) == first.id
    assert asyncio.run(afire_tick(queue, "ping", due, second, 120)) == first.id

    key = queue.keys.tick("ping", due.timestamp())
    assert key == f"{queue.prefix}:tick:ping:{int(due.timestamp())}"
    assert redis_client.get(key) == first.id
    assert 0 < redis_client.ttl(key) <= 120
    assert_census(queue, redis_client, {first.id: "queue:default:normal"})
    other_tick = due + timedelta(minutes=1)
    assert fire_tick(queue, "ping", other_tick, second, 120) == second.id


# -- missed runs -----------------------------------------------------------------------------------


def behind(scheduler, policy, minutes=10):
    """A per-minute task whose next run was due ``minutes`` ago, as after a scheduler outage."""
    now = utcnow().replace(microsecond=0)
    scheduler.store.add(
        every(60, missed_run_policy=policy, next_run=now - timedelta(minutes=minutes))
    )
    return now


def test_missed_runs_catch_up_once(scheduler, queue, caplog):
    now = behind(scheduler, "catch_up")
    caplog.set_level(logging.WARNING, "django_jobs.scheduler")

    fired = scheduler.run_pending(now + timedelta(seconds=59))

    assert [f.due for f in fired] == [now]
    assert [j.scheduled_at for j in pending(queue)] == [now]
    assert "task ping: 11 run(s) due from" in caplog.text
    assert "policy catch_up: enqueueing 1 (the latest), dropping 10" in caplog.text
    assert scheduler.get_task("ping").next_run == now + timedelta(minutes=1)


def test_missed_runs_can_be_skipped(scheduler, queue, caplog):
    now = behind(scheduler, "skip")
    caplog.set_level(logging.WARNING, "django_jobs.scheduler")

    fired = scheduler.run_pending(now + timedelta(seconds=45))

    assert fired == []
    assert pending(queue) == []
    assert "policy skip: skipping 11" in caplog.text
    task = scheduler.get_task("ping")
    assert (task.next_run, task.run_count) == (now + timedelta(minutes=1), 0)


def test_all_missed_runs_can_be_made_up_for(scheduler, queue, caplog):
    now = behind(scheduler, "all")
    caplog.set_level(logging.WARNING, "django_jobs.scheduler")

    fired = scheduler.run_pending(now + timedelta(seconds=10))

    expected = [now - timedelta(minutes=m) for m in range(10, -1, -1)]
    assert [f.due for f in fired] == expected
    assert [j.scheduled_at for j in pending(queue)] == expected
    assert "10 run(s) due from" in caplog.text
    assert "policy all: enqueueing them" in caplog.text
    assert scheduler.get_task("ping").run_count == 11


def test_making_up_for_all_missed_runs_is_bounded_and_says_so(scheduler, queue, caplog):
    now = behind(scheduler, "all", minutes=3 * 24 * 60)
    caplog.set_level(logging.WARNING, "django_jobs.scheduler")

    fired = scheduler.run_pending(now)

    assert len(fired) == 101
    assert len(pending(queue)) == 101
    assert "4320 run(s) due from" in caplog.text
    assert "policy all: enqueueing 101 (the latest), dropping 4220" in caplog.text


def test_a_late_run_within_the_grace_time_is_not_missed(scheduler, queue, caplog):
    now = behind(scheduler, "skip", minutes=0)
    caplog.set_level(logging.WARNING, "django_jobs.scheduler")

    fired = scheduler.run_pending(now + timedelta(seconds=25))

    assert [f.due for f in fired] == [now]
    assert caplog.text == ""


# -- DST, with the scheduler waking every few minutes --------------------------------------------


@pytest.mark.parametrize(
    ("zone", "day"),
    [
        ("Europe/Berlin", "2025-03-30"),
        ("Europe/Berlin", "2025-10-26"),
        ("America/New_York", "2025-03-09"),
        ("America/New_York", "2025-11-02"),
    ],
)
@pytest.mark.parametrize("expression", ["30 2 * * *", "0 * * * *"])
def test_through_a_dst_change_each_run_is_enqueued_once(queue, zone, day, expression):
    tz = ZoneInfo(zone)
    start = datetime.fromisoformat(day).replace(tzinfo=tz) - timedelta(days=1)
    end = start + timedelta(days=3)
    scheduler = JobScheduler(jobs=queue, sync=False, grace=600)
    task = cron(expression, timezone=zone)
    scheduler.store.add(replace(task, next_run=task.calculate_next_run(start)))

    clock = start.astimezone(UTC)  # real time: the repeated hour of autumn passes twice
    while clock < end:
        scheduler.run_pending(clock)
        clock += timedelta(minutes=5)

    enqueued = [job.scheduled_at for job in pending(queue)]
    expected = []
    for moment in CronSim(expression, start):
        if moment > clock - timedelta(minutes=5):
            break
        expected.append(moment.astimezone(UTC))
    assert enqueued == expected
    assert len(set(enqueued)) == len(enqueued)
    if expression == "30 2 * * *":
        assert set(Counter(t.astimezone(tz).date() for t in enqueued).values()) == {1}


# -- running in a thread ---------------------------------------------------------------------------


def test_start_runs_one_loop_however_often_it_is_called(scheduler):
    assert scheduler.start() is True
    assert scheduler.start() is False
    assert scheduler.running

    loops = [t for t in threading.enumerate() if t.name.startswith("django-jobs scheduler")]
    assert len(loops) == 1
    with pytest.raises(RuntimeError, match="is running already"):
        scheduler.run()

    scheduler.stop(timeout=5)
    assert not scheduler.running
    assert not loops[0].is_alive()
    assert scheduler.start() is True, "it can start again"


def test_the_loop_enqueues_due_runs(scheduler, queue):
    scheduler.register(every(1))
    scheduler.start()

    deadline = time.monotonic() + 5
    while len(pending(queue)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    scheduler.stop(timeout=5)

    dues = [job.scheduled_at for job in pending(queue)]
    assert len(dues) >= 3
    assert dues == [dues[0] + timedelta(seconds=i) for i in range(len(dues))]


def test_a_task_registered_while_running_is_picked_up_at_once(scheduler, queue):
    scheduler.start()
    time.sleep(0.2)

    started = time.monotonic()
    scheduler.register(every(3600))
    while not pending(queue) and time.monotonic() - started < 2:
        time.sleep(0.01)

    assert time.monotonic() - started < 0.3


def test_the_loop_sleeps_until_the_next_due_time(queue):
    class Counting(JobScheduler):
        passes = 0

        def run_pending(self, now=None):
            Counting.passes += 1
            return super().run_pending(now)

    scheduler = Counting(jobs=queue, sync=False)
    scheduler.register(cron("0 0 1 1 *"))
    scheduler.start()
    time.sleep(2)
    scheduler.stop(timeout=5)

    assert Counting.passes <= 6, "one look every half second, no busy loop"


# -- the database store ----------------------------------------------------------------------------


@pytest.fixture
def db_scheduler(queue, db):
    scheduler = JobScheduler(DatabaseTaskStore(queue), jobs=queue, sync=False)
    yield scheduler
    scheduler.stop(timeout=10)


def test_the_database_store_registers_enables_and_unregisters(db_scheduler):
    task = db_scheduler.register(every(60, description="A ping."))

    row = TaskRow.objects.get(name="ping")
    assert (row.job_name, row.interval_seconds, row.args) == ("tests.record", 60, ["ping"])
    assert row.next_run == task.next_run
    assert db_scheduler.disable("ping")
    assert TaskRow.objects.get(name="ping").next_run is None
    assert db_scheduler.enable("ping")
    assert TaskRow.objects.get(name="ping").next_run is not None
    assert [t.name for t in db_scheduler.get_all_tasks()] == ["ping"]
    assert db_scheduler.unregister("ping")
    assert not TaskRow.objects.exists()
    assert not db_scheduler.unregister("ping")


def test_the_database_records_runs(db_scheduler, queue):
    db_scheduler.register(every(60))
    due = TaskRow.objects.get().next_run

    (fired,) = db_scheduler.run_pending()

    row = TaskRow.objects.get()
    assert (row.last_run, row.next_run, row.run_count) == (due, due + timedelta(minutes=1), 1)
    assert queue.get_job(fired.job_id).scheduled_at == due


def test_recording_the_same_run_twice_counts_it_once(db):
    TaskRow.objects.create(
        name="ping", job_name="tests.record", schedule_type="interval", interval_seconds=60
    )
    first = TaskRow.objects.get().next_run
    store = DatabaseTaskStore()

    for _ in range(2):  # as two schedulers that both processed the run would
        store.record([RunRecord("ping", first, (first,), first + timedelta(minutes=1))])
    second = first + timedelta(minutes=1)
    store.record([RunRecord("ping", first, (first, second), first + timedelta(minutes=2))])

    row = TaskRow.objects.get()
    assert row.run_count == 2
    assert row.last_run == first + timedelta(minutes=1)
    assert row.next_run == first + timedelta(minutes=1), "the stored next run had moved on"


def test_recording_does_not_undo_an_edit_of_the_schedule(db):
    row = TaskRow.objects.create(
        name="ping", job_name="tests.record", schedule_type="interval", interval_seconds=60
    )
    due = row.next_run
    row.schedule_type, row.cron_expression = "cron", "0 3 * * *"
    row.save()  # in the admin, while a scheduler enqueues the run due at ``due``
    edited = TaskRow.objects.get().next_run

    DatabaseTaskStore().record([RunRecord("ping", due, (due,), due + timedelta(minutes=1))])

    row = TaskRow.objects.get()
    assert (row.next_run, row.run_count, row.last_run) == (edited, 1, due)


def test_one_recording_holds_tasks_of_every_shape(db):
    for name in ("a", "b", "c"):
        TaskRow.objects.create(
            name=name, job_name="tests.record", schedule_type="interval", interval_seconds=60
        )
    due = {row.name: row.next_run for row in TaskRow.objects.all()}
    minute = timedelta(minutes=1)

    DatabaseTaskStore().record(
        [
            RunRecord("a", due["a"], (), due["a"] + minute),  # its job could not be made
            RunRecord("b", due["b"], (due["b"], due["b"] + minute), due["b"] + 2 * minute),
            RunRecord("c", due["c"] + minute, (due["c"],), None),  # edited meanwhile
        ]
    )

    rows = {row.name: (row.run_count, row.last_run, row.next_run) for row in TaskRow.objects.all()}
    assert rows["a"] == (0, None, due["a"] + minute)
    assert rows["b"] == (2, due["b"] + minute, due["b"] + 2 * minute)
    assert rows["c"] == (1, due["c"], due["c"]), "the stored next run had moved on"


def test_runs_fired_but_not_recorded_are_recorded_by_the_next_pass_not_enqueued_again(queue):
    class FailingOnce(MemoryTaskStore):
        """Its first recording fails, as a database that stopped answering would."""

        failed = False

        def record(self, records):
            if not self.failed:
                self.failed = True
                raise DatabaseError("the database did not answer")
            super().record(records)

    store = FailingOnce()
    due = utcnow().replace(microsecond=0)
    store.add(every(60, next_run=due))
    scheduler = JobScheduler(store, jobs=queue, sync=False)

    with pytest.raises(DatabaseError):
        scheduler.run_pending(due)
    (job,) = pending(queue)
    (fired,) = scheduler.run_pending(due + timedelta(seconds=1))

    assert (fired.job_id, fired.enqueued) == (job.id, False)
    assert [j.id for j in pending(queue)] == [job.id]
    task = store.get("ping")
    assert (task.run_count, task.last_run, task.next_run) == (1, due, due + timedelta(minutes=1))


def test_saving_a_task_never_overwrites_what_the_scheduler_recorded(db_scheduler):
    db_scheduler.register(every(60))
    stale = TaskRow.objects.get()  # as the admin's change form read it
    db_scheduler.run_pending()
    recorded = TaskRow.objects.values("last_run", "next_run", "run_count").get()

    stale.description = "Edited."
    stale.save()

    after = TaskRow.objects.get()
    assert after.description == "Edited."
    assert {
        "last_run": after.last_run,
        "next_run": after.next_run,
        "run_count": after.run_count,
    } == (recorded)


def test_a_changed_interval_counts_from_the_last_run_the_scheduler_recorded(db_scheduler):
    db_scheduler.register(every(60))
    stale = TaskRow.objects.get()  # read before the run below, so without its last_run
    (fired,) = db_scheduler.run_pending()

    stale.interval_seconds = 600
    stale.save()

    row = TaskRow.objects.get()
    assert (row.last_run, row.run_count) == (fired.due, 1)
    assert row.next_run == fired.due + timedelta(minutes=10)


def test_an_invalid_row_is_reported_and_the_others_still_run(db_scheduler, caplog):
    db_scheduler.register(every(60))
    db_scheduler.register(every(60, name="broken"))
    TaskRow.objects.filter(name="broken").update(schedule_type="cron", cron_expression="0 25 * * *")
    caplog.set_level(logging.ERROR, "django_jobs.scheduler")

    fired = db_scheduler.run_pending()
    db_scheduler._version = None  # loaded again: said once only
    db_scheduler.run_pending()

    assert [f.task for f in fired] == ["ping"]
    message = "task broken is broken and does not run: cron_expression: Bad hour field '25'"
    assert caplog.text.count(message) == 1
    row = TaskRow.objects.get(name="broken")
    assert row.broken_reason.startswith("cron_expression: Bad hour field '25'")
    assert row.broken_at is not None
    assert row.next_run is None


def test_saving_or_deleting_a_task_tells_the_schedulers(
    db, queue, redis_client, django_capture_on_commit_callbacks
):
    key = queue.keys.schedules_version
    with django_capture_on_commit_callbacks(execute=True):
        row = TaskRow.objects.create(
            name="ping", job_name="tests.record", schedule_type="interval", interval_seconds=60
        )
    assert redis_client.get(key) == "1"
    with django_capture_on_commit_callbacks(execute=True):
        row.enabled = False
        row.save()
    with django_capture_on_commit_callbacks(execute=True):
        row.delete()
    assert redis_client.get(key) == "3"


@pytest.mark.django_db(transaction=True)
def test_a_change_in_the_database_is_seen_within_a_second(queue):
    row = TaskRow.objects.create(
        name="ping",
        job_name="tests.record",
        schedule_type="interval",
        interval_seconds=1,
        args=["ping"],
    )
    scheduler = JobScheduler(DatabaseTaskStore(queue), jobs=queue, sync=False)
    scheduler.start()
    try:
        deadline = time.monotonic() + 5
        while len(pending(queue)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        row.enabled = False
        row.save()
        disabled_at = utcnow()
        time.sleep(2.5)
    finally:
        scheduler.stop(timeout=10)

    created = [job.created_at for job in pending(queue)]
    assert len(created) >= 2
    assert max(created) <= disabled_at + timedelta(seconds=1)


# -- DJANGO_JOBS['SCHEDULES'] ---------------------------------------------------------------------


def sync(settings, queue, **schedules):
    settings.DJANGO_JOBS = {**settings.DJANGO_JOBS, "SCHEDULES": schedules}
    JobScheduler(DatabaseTaskStore(queue), jobs=queue).sync_schedules()
    return {row.name: row for row in TaskRow.objects.all()}


PING = {"job": "tests.record", "interval": 60, "args": ["ping"]}
NIGHTLY = {"job": "tests.record", "cron": "0 2 * * *", "timezone": "Europe/Berlin", "args": ["n"]}


def test_scheduled_tasks_in_settings_are_written_into_the_table(db, jobs_settings, queue):
    rows = sync(jobs_settings, queue, ping=PING, nightly={**NIGHTLY, "enabled": False})

    assert rows["ping"].interval_seconds == 60
    assert rows["ping"].next_run is not None
    assert rows["ping"].declared_in_code
    assert (rows["nightly"].cron_expression, rows["nightly"].enabled) == ("0 2 * * *", False)
    assert rows["nightly"].next_run is None
    again = sync(jobs_settings, queue, ping=PING, nightly={**NIGHTLY, "enabled": False})
    assert again["ping"].updated_at == rows["ping"].updated_at, "nothing changed"


def test_a_restart_keeps_what_was_changed_in_the_admin(db, jobs_settings, queue, caplog):
    sync(jobs_settings, queue, ping=PING, nightly=NIGHTLY)
    row = TaskRow.objects.get(name="ping")
    row.enabled = False
    row.args = ["edited"]
    row.save()
    caplog.set_level(logging.WARNING, "django_jobs.scheduler")

    rows = sync(
        jobs_settings,
        queue,
        ping={**PING, "interval": 120, "args": ["new"]},
        nightly={**NIGHTLY, "cron": "0 3 * * *"},
    )

    assert rows["ping"].enabled is False
    assert rows["ping"].args == ["edited"], "changed in the admin: the admin's value stays"
    assert rows["ping"].interval_seconds == 120, "not changed in the admin: the settings decide"
    assert rows["nightly"].cron_expression == "0 3 * * *"
    assert rows["nightly"].next_run.astimezone(ZoneInfo("Europe/Berlin")).hour == 3
    assert "sets args to ['new'], but it was changed to ['edited'] in the admin" in caplog.text


def test_a_task_no_longer_in_the_settings_is_deleted(db, jobs_settings, queue):
    TaskRow.objects.create(
        name="made-in-admin",
        job_name="tests.record",
        schedule_type="interval",
        interval_seconds=60,
    )
    sync(jobs_settings, queue, ping=PING, nightly=NIGHTLY)

    rows = sync(jobs_settings, queue, ping=PING)

    assert set(rows) == {"ping", "made-in-admin"}


def test_a_task_made_in_the_admin_keeps_its_fields_when_the_settings_declare_it(
    db, jobs_settings, queue
):
    TaskRow.objects.create(
        name="ping", job_name="tests.record", schedule_type="interval", interval_seconds=300
    )

    rows = sync(jobs_settings, queue, ping=PING)

    assert rows["ping"].interval_seconds == 300
    assert rows["ping"].declared_in_code


# -- system checks ---------------------------------------------------------------------------------


def ids(messages):
    return [m.id for m in messages if m.id and m.id.startswith("django_jobs.")]


def test_a_task_naming_an_unregistered_job_is_a_warning(db):
    TaskRow.objects.create(
        name="ghost", job_name="gone.job", schedule_type="interval", interval_seconds=60
    )
    TaskRow.objects.create(
        name="ping", job_name="tests.record", schedule_type="interval", interval_seconds=60
    )

    assert "django_jobs.W002" not in ids(run_checks()), "a database check: only when asked"
    messages = [m for m in run_checks(databases=["default"]) if m.id == "django_jobs.W002"]

    assert len(messages) == 1
    assert "Scheduled task 'ghost' names the job 'gone.job', which is not registered" in (
        messages[0].msg
    )
    assert "tests.record" in messages[0].hint


@pytest.mark.django_db(transaction=True)
def test_the_task_check_is_skipped_without_the_table():
    with connection.schema_editor() as editor:
        editor.delete_model(TaskRow)
    try:
        assert ids(run_checks(databases=["default"])) == []
    finally:
        with connection.schema_editor() as editor:
            editor.create_model(TaskRow)
            # Dropping the table dropped its triggers (the schedules' version): put them back
            # for the tests that follow.
            migration = importlib.import_module(
                "django_jobs.migrations.0004_broken_tasks_and_schedules_version"
            )
            migration.install_triggers(editor, TaskRow)


@pytest.mark.parametrize(
    ("schedules", "message"),
    [
        ([], "DJANGO_JOBS['SCHEDULES'] must be a dict of task name to schedule, not list."),
        ({"t": {"job": "tests.record"}}, "needs exactly one of 'interval', 'cron' and 'run_at'"),
        ({"t": {"job": "tests.record", "cron": "0 0 * 13 *"}}, "Bad month field '13'"),
        ({"t": {"job": "gone.job", "interval": 5}}, "names the job 'gone.job', which is not"),
    ],
)
def test_bad_schedules_setting_is_an_error(settings, schedules, message):
    settings.DJANGO_JOBS = {**settings.DJANGO_JOBS, "SCHEDULES": schedules}

    messages = [m for m in run_checks() if m.id == "django_jobs.E011"]

    assert len(messages) == 1
    assert message in messages[0].msg


def test_good_schedules_setting_passes(settings):
    settings.DJANGO_JOBS = {**settings.DJANGO_JOBS, "SCHEDULES": {"p": PING, "n": NIGHTLY}}

    assert ids(run_checks()) == []
