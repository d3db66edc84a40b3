"""``manage.py runscheduler`` in real processes: many at once enqueue each run exactly once, an
edit in the admin takes effect within a second, missed runs on start, graceful stop.

Each process gets the test's key prefix (JOBS_TEST_PREFIX), settings (JOBS_TEST_SETTINGS) and
SQLite file (JOBS_TEST_DB): the test database itself when the test writes tasks with the ORM
(``transaction=True``, so that the processes see them), or a file of its own.
"""

import contextlib
import signal
import sqlite3
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.urls import reverse

from django_jobs import JobQueue
from django_jobs.models import ScheduledTask as TaskRow
from django_jobs.serialization import utcnow
from tests.processes import Processes, wait_until


def start_scheduler(group, *args):
    return group.start("--verbosity", "2", *args, command="runscheduler")


@pytest.fixture
def processes(tmp_path, prefix, jobs_settings):
    """Processes sharing this test's prefix and its (file) test database."""
    made = []

    def make(settings=None, db=None, prefix=prefix):
        procs = Processes(
            tmp_path / f"group-{len(made)}",
            prefix,
            settings,
            db or connection.settings_dict["NAME"],
        )
        made.append(procs)
        return procs

    yield make
    for procs in made:
        procs.close()


def jobs_of(prefix):
    return sorted(JobQueue(prefix).list_jobs("pending", limit=10_000), key=lambda j: j.scheduled_at)


TICK = {"tick": {"job": "tests.record", "interval": 1, "args": ["tick"]}}


@pytest.mark.slow
def test_two_and_three_schedulers_enqueue_each_run_of_a_task_exactly_once(
    tmp_path, processes, redis_client
):
    """Two groups at once, each with its own namespace and database: 2 and 3 processes run a
    task due every second for 30 s."""
    groups = {}
    for size in (2, 3):
        prefix = f"{{test-{uuid.uuid4().hex[:12]}}}"
        db = tmp_path / f"schedulers-{size}.sqlite3"
        groups[size] = processes(settings={"SCHEDULES": TICK}, db=str(db), prefix=prefix)
    try:
        migrations = [g.run("migrate", "--verbosity", "0") for g in groups.values()]
        assert [m.returncode for m in migrations] == [0, 0], [m.stderr for m in migrations]
        for size, group in groups.items():
            for _ in range(size):
                start_scheduler(group)
        for group in groups.values():
            wait_until(lambda g=group: jobs_of(g.prefix), message="the first run")
        time.sleep(30)
        codes = [g.stop(p) for g in groups.values() for p in g.procs]
        assert codes == [0] * 5, "\n".join(g.logs() for g in groups.values())

        for size, group in groups.items():
            jobs = jobs_of(group.prefix)
            dues = [job.scheduled_at for job in jobs]
            assert len(set(dues)) == len(dues), f"{size} schedulers: a run was enqueued twice"
            assert dues == [dues[0] + timedelta(seconds=i) for i in range(len(dues))], (
                f"{size} schedulers: a run is missing"
            )
            assert len(dues) >= 30
            assert {(j.name, tuple(j.args)) for j in jobs} == {("tests.record", ("tick",))}
            ticks = list(redis_client.scan_iter(match=f"{group.prefix}:tick:tick:*"))
            assert len(ticks) == len(dues)
            with contextlib.closing(sqlite3.connect(group.db)) as db:
                ((run_count, last_run),) = db.execute(
                    "SELECT run_count, last_run FROM django_jobs_scheduledtask"
                ).fetchall()
            assert run_count == len(dues), "each run was counted once"
            assert datetime.fromisoformat(last_run).replace(tzinfo=UTC) == dues[-1]
            logs = group.logs()
            assert logs.count("tests.record) due") == len(dues)
            assert "added from DJANGO_JOBS['SCHEDULES']" in logs
            assert "Traceback" not in logs
    finally:
        for group in groups.values():
            keys = list(redis_client.scan_iter(match=f"{group.prefix}*"))
            if keys:
                redis_client.delete(*keys)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_disabling_a_task_in_the_admin_stops_it_within_a_second(processes, admin_client):
    row = TaskRow.objects.create(
        name="tick",
        job_name="tests.record",
        schedule_type="interval",
        interval_seconds=1,
        args=["tick"],
    )
    group = processes()
    start_scheduler(group)
    wait_until(lambda: len(jobs_of(group.prefix)) >= 3, message="three runs")

    response = admin_client.post(
        reverse("admin:django_jobs_scheduledtask_changelist"),
        {
            "form-TOTAL_FORMS": "1",
            "form-INITIAL_FORMS": "1",
            "form-0-id": str(row.pk),
            "_save": "Save",
        },
    )
    disabled_at = utcnow()
    assert response.status_code == 302
    time.sleep(3)
    count = len(jobs_of(group.prefix))
    enabled = admin_client.post(
        reverse("admin:django_jobs_scheduledtask_changelist"),
        {"action": "enable_tasks", "_selected_action": [str(row.pk)]},
    )
    assert enabled.status_code == 302
    wait_until(
        lambda: len(jobs_of(group.prefix)) > count, timeout=5, message="a run after enabling"
    )
    assert group.stop(group.procs[0]) == 0

    jobs = jobs_of(group.prefix)
    before = [j for j in jobs if j.created_at <= disabled_at]
    assert len(before) >= 3
    late = [j.created_at for j in jobs[:count] if j.created_at > disabled_at + timedelta(seconds=1)]
    assert late == [], f"enqueued after the task was disabled: {late}\n{group.logs()}"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("policy", ["catch_up", "skip", "all"])
def test_on_start_missed_runs_follow_the_policy(processes, policy):
    now = utcnow().replace(microsecond=0)
    row = TaskRow.objects.create(
        name="hourly",
        job_name="tests.record",
        schedule_type="cron",
        cron_expression="0 * * * *",
        missed_run_policy=policy,
        args=["hourly"],
    )
    # The last scheduler stopped six hours ago, before the run due then.
    last_due = now.replace(minute=0, second=0)
    first_missed = last_due - timedelta(hours=5)
    TaskRow.objects.filter(pk=row.pk).update(next_run=first_missed)

    result = processes().run("runscheduler", "--once")

    assert result.returncode == 0, result.stderr
    dues = [job.scheduled_at for job in jobs_of(JobQueue().prefix)]
    expected = {
        "catch_up": [last_due],
        "skip": [],
        "all": [first_missed + timedelta(hours=h) for h in range(6)],
    }[policy]
    if now - last_due <= timedelta(seconds=30):  # the latest is on time: it runs anyway
        expected = sorted({*expected, last_due})
    assert dues == expected
    assert "were missed (no scheduler was running); policy " + policy in result.stderr
    row.refresh_from_db()
    assert row.next_run == last_due + timedelta(hours=1)
    assert row.run_count == len(expected)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_scheduler_stops_gracefully_on_a_signal(processes, redis_client, signum):
    group = processes()
    proc = start_scheduler(group, "--scheduler-id", "sched-1")
    key = JobQueue().keys.schedulers
    wait_until(lambda: redis_client.zscore(key, "sched-1"), message="the heartbeat")

    assert group.stop(proc, signum) == 0
    assert redis_client.zscore(key, "sched-1") is None
    log = group.output(proc)
    assert "scheduler sched-1 started" in log
    assert "scheduler sched-1 stopped" in log


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_scheduled_runs_are_run_by_a_worker(processes, tmp_path):
    TaskRow.objects.create(
        name="tick",
        job_name="tests.record",
        schedule_type="interval",
        interval_seconds=1,
        args=["tick"],
    )
    group = processes()
    start_scheduler(group)
    group.start("--concurrency", "1")
    ledger = group.folder / "record.log"

    wait_until(
        lambda: ledger.exists() and ledger.read_text().count("tick") >= 3, message="three runs"
    )
    assert [group.stop(p) for p in group.procs] == [0, 0], group.logs()
