"""The scheduler's work does not grow with the tasks that are not due: a pass looks only at the
due ones, an edit makes the database store read only the changed rows into tasks, and a
database that reports every write is not reloaded on a timer. Counted calls, never timings
(bench/scheduler_scale.py measures 100,000 tasks)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_jobs.models import ScheduledTask as TaskRow
from django_jobs.scheduling import database as database_module
from django_jobs.scheduling import scheduler as scheduler_module
from django_jobs.scheduling import ticks as ticks_module
from django_jobs.scheduling import turns as turns_module
from django_jobs.scheduling.changes import VERSION_VENDORS
from django_jobs.scheduling.database import DatabaseTaskStore
from django_jobs.scheduling.scheduler import JobScheduler
from django_jobs.scheduling.stores import MemoryTaskStore
from django_jobs.scheduling.task import TASK_FIELDS, ScheduledTask
from django_jobs.serialization import utcnow

TASKS = 2_000


def every(seconds, name, **fields):
    return ScheduledTask(name, "tests.record", "interval", seconds, args=[name], **fields)


def waiting(count, now):
    """``count`` hourly tasks, none due in the next half hour."""
    return [
        every(3600, f"idle-{i:05}", next_run=now + timedelta(seconds=1800 + i))
        for i in range(count)
    ]


class Counted:
    """Wraps a function and counts its calls (and the names of the tasks it was given)."""

    def __init__(self, function):
        self.function, self.names = function, []

    def __call__(self, task, *args, **kwargs):
        self.names.append(task.name)
        return self.function(task, *args, **kwargs)


@pytest.fixture
def due_runs(monkeypatch):
    counted = Counted(turns_module.due_runs)
    monkeypatch.setattr(turns_module, "due_runs", counted)
    return counted


def test_a_pass_looks_only_at_the_due_tasks_among_thousands(queue, due_runs):
    now = utcnow().replace(microsecond=0)
    store = MemoryTaskStore()
    for task in [*waiting(TASKS, now), every(1, "busy", next_run=now)]:
        store.add(task)
    scheduler = JobScheduler(store, jobs=queue, sync=False)

    seconds = [now + timedelta(seconds=s) for s in range(5)]
    fired = [scheduler.run_pending(second) for second in seconds]

    assert [[(f.task, f.due) for f in runs] for runs in fired] == [
        [("busy", second)] for second in seconds
    ]
    assert due_runs.names == ["busy"] * 5  # not once per waiting task


def test_a_task_due_later_is_looked_at_when_it_is_due_and_not_before(queue, due_runs):
    now = utcnow().replace(microsecond=0)
    store = MemoryTaskStore()
    for task in waiting(TASKS, now):
        store.add(task)
    scheduler = JobScheduler(store, jobs=queue, sync=False)

    assert scheduler.run_pending(now) == []
    first = now + timedelta(seconds=1800)
    fired = scheduler.run_pending(first + timedelta(seconds=1))

    assert [(f.task, f.due) for f in fired] == [
        ("idle-00000", first),
        ("idle-00001", first + timedelta(seconds=1)),
    ]
    assert due_runs.names == ["idle-00000", "idle-00001"]
    assert store.get("idle-00000").next_run == first + timedelta(seconds=3600)


@pytest.fixture
def rows(db):
    now = utcnow().replace(microsecond=0)
    made = []
    for task in waiting(TASKS, now):
        row = TaskRow(name=task.name)
        row.set_definition(task)
        row.next_run = task.next_run
        made.append(row)
    TaskRow.objects.bulk_create(made, batch_size=500)
    return now


@pytest.fixture
def to_task(monkeypatch):
    """Counts the rows the database store makes into tasks (the names of the tasks)."""
    original = database_module.task_from_row

    def counted(values):
        counted.names.append(values[TASK_FIELDS.index("name")])
        return original(values)

    counted.names = []
    monkeypatch.setattr(database_module, "task_from_row", counted)
    return counted


def test_the_database_store_reads_only_new_and_changed_rows_into_tasks(rows, to_task):
    store = DatabaseTaskStore()
    first = {task.name: task for task in store.load()}
    assert len(to_task.names) == TASKS

    TaskRow.objects.filter(name="idle-00007").update(interval_seconds=60)  # bypasses save()
    TaskRow.objects.filter(name="idle-00008").delete()
    TaskRow.objects.create(
        name="new", job_name="tests.record", schedule_type="interval", interval_seconds=5
    )
    to_task.names.clear()
    second = {task.name: task for task in store.load()}

    assert sorted(to_task.names) == ["idle-00007", "new"]
    assert second["idle-00007"].interval_seconds == 60
    assert "idle-00008" not in second
    assert "new" in second
    assert second["idle-00001"] is first["idle-00001"]  # unchanged: the same object
    assert len(second) == TASKS


def test_rows_that_make_no_task_are_reported_at_load_and_the_others_load(rows, caplog):
    # Written past save() and the form, as SQL or a bulk update could: many good cron rows
    # sharing an expression and a zone, one bad expression, one unknown zone.
    TaskRow.objects.filter(name__lt="idle-00100").update(
        schedule_type="cron", cron_expression="15 */3 * * *", timezone="Europe/Berlin"
    )
    TaskRow.objects.filter(name="idle-00003").update(cron_expression="61 * * * *")
    TaskRow.objects.filter(name="idle-00150").update(timezone="Mars/Olympus")

    loaded = {task.name: task for task in DatabaseTaskStore().load()}
    again = {task.name: task for task in DatabaseTaskStore().load()}  # another scheduler

    good = {f"idle-{i:05}" for i in range(TASKS)} - {"idle-00003", "idle-00150"}
    assert set(loaded) == set(again) == good
    assert {(t.cron_expression, t.timezone) for n, t in loaded.items() if n < "idle-00100"} == {
        ("15 */3 * * *", "Europe/Berlin")
    }
    broken = dict(TaskRow.objects.exclude(broken_reason=None).values_list("name", "broken_reason"))
    assert set(broken) == {"idle-00003", "idle-00150"}
    assert "Bad minute field '61'" in broken["idle-00003"]
    assert "Unknown time zone 'Mars/Olympus'" in broken["idle-00150"]
    assert caplog.text.count("is broken and does not run") == 2  # said once, not per load


@pytest.mark.django_db(transaction=True)
def test_an_edit_reaches_the_scheduler_without_reading_every_row(queue, rows, to_task):
    scheduler = JobScheduler(DatabaseTaskStore(queue), jobs=queue, sync=False)
    scheduler.run_pending(rows)
    to_task.names.clear()

    TaskRow.objects.filter(name="idle-00003").update(interval_seconds=1)
    fired = scheduler.run_pending(rows + timedelta(seconds=1))

    assert set(to_task.names) == {"idle-00003"}  # loaded, then read back with its next run
    # The schedule changed without save(): its next run is computed from then, and it runs.
    assert [f.task for f in fired] == ["idle-00003"]


@pytest.mark.django_db(transaction=True)
def test_tasks_without_a_next_run_are_computed_once_not_every_pass(queue, rows, due_runs):
    # As bulk_create and SQL leave new tasks: the scheduler computes their next runs.
    TaskRow.objects.update(next_run=None, run_immediately=False)
    scheduler = JobScheduler(DatabaseTaskStore(queue), jobs=queue, sync=False)

    assert scheduler.run_pending(rows) == []
    looked_at = len(due_runs.names)
    scheduler.run_pending(rows + timedelta(seconds=1))

    assert looked_at == TASKS
    assert len(due_runs.names) == TASKS  # the second pass looked at none
    assert not TaskRow.objects.filter(next_run__isnull=True).exists()


@pytest.mark.django_db(transaction=True)
def test_a_database_that_reports_every_write_is_not_reloaded_on_a_timer(
    queue, rows, to_task, monkeypatch
):
    monkeypatch.setattr(scheduler_module, "RELOAD_EVERY", 0.0)  # every pass is "30 s later"
    scheduler = JobScheduler(DatabaseTaskStore(queue), jobs=queue, sync=False)
    for second in range(3):
        scheduler.run_pending(rows + timedelta(seconds=second))

    assert connection.vendor in VERSION_VENDORS  # it has the schedules' version (migration 0004)
    assert len(to_task.names) == TASKS  # the first load only


@pytest.mark.django_db(transaction=True)
def test_a_pass_records_its_due_tasks_with_one_statement_and_reads_no_task_rows(queue, rows):
    TaskRow.objects.filter(name__in=["idle-00001", "idle-00002"]).update(next_run=rows)
    scheduler = JobScheduler(DatabaseTaskStore(queue), jobs=queue, sync=False)
    scheduler.run_pending(rows - timedelta(seconds=1))  # loads the tasks

    with CaptureQueriesContext(connection) as queries:
        fired = scheduler.run_pending(rows)

    assert sorted(f.task for f in fired) == ["idle-00001", "idle-00002"]
    statements = [q["sql"] for q in queries.captured_queries]
    # Both tasks' UPDATEs are one executemany ("2 times: UPDATE ..."), in one transaction.
    assert [s.split(":")[0] for s in statements if "UPDATE" in s] == ["2 times"], statements
    assert not [s for s in statements if s.startswith("SELECT") and "scheduledtask" in s]
    recorded = TaskRow.objects.filter(name__in=["idle-00001", "idle-00002"])
    assert {(r.last_run, r.run_count) for r in recorded} == {(rows, 1)}
    assert {r.next_run for r in recorded} == {rows + timedelta(hours=1)}


def test_a_pass_fires_and_records_its_runs_in_batches(queue, monkeypatch):
    monkeypatch.setattr(scheduler_module, "BATCH", 3)
    now = utcnow().replace(microsecond=0)
    store = MemoryTaskStore()
    for i in range(7):
        store.add(every(60, f"due-{i}", next_run=now))
    batches = []

    def record(records):
        batches.append(len(records))
        MemoryTaskStore.record(store, records)

    monkeypatch.setattr(store, "record", record)
    round_trips = []
    run_each = ticks_module.run_each
    monkeypatch.setattr(
        ticks_module, "run_each", lambda plans: round_trips.append(len(plans)) or run_each(plans)
    )
    scheduler = JobScheduler(store, jobs=queue, sync=False)

    assert len(scheduler.run_pending(now)) == 7

    assert round_trips == [3, 3, 1], "each batch's ticks are fired in one round trip"
    assert batches == [3, 3, 1]
    assert len(queue.list_jobs("pending", limit=100)) == 7
    assert {(t.run_count, t.next_run) for t in store.load()} == {(1, now + timedelta(minutes=1))}
