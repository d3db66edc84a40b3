"""Progress: a running job reports how far it is (``JobContext.progress``), throttled in the worker
process, written under the job's lease by ``progress.lua``, read from ``handle.progress``,
``JobQueue.get_job``, the console and the testing modes."""

import asyncio
import itertools
import json
import logging
import math
import time
from datetime import UTC, datetime

import pytest
from django.urls import reverse

from django_jobs import Job, JobContext, JobStatus, Progress, current_job
from django_jobs.testing import MemoryStore, immediate_jobs
from django_jobs.testing.runner import attempt
from django_jobs.validation import progress as checked
from django_jobs.worker.execute import run_job
from django_jobs.worker.leases import Leases
from tests.census import assert_census
from tests.cli import jobs_cli, jobs_json
from tests.processes import wait_until
from tests.testapp import progress_jobs as jobs

pytest_plugins = ["django_jobs.testing.pytest"]


class CountingLeases(Leases):
    """The worker's own lease protocol, against the real Redis, counting its progress writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[dict] = []
        self.written_at: list[float] = []  # when each write was sent (the thread's time)

    def record_progress(self, job, progress):
        self.writes.append(json.loads(progress))
        self.written_at.append(time.monotonic())
        return super().record_progress(job, progress)


def claimed(queue, job_id, lease=30.0):
    """Lease the next job as a worker would; it must be ``job_id``."""
    job = Leases().dequeue(queue.queues, "host.1:0", lease)
    assert job is not None
    assert job.id == job_id
    return job


def stored_progress(redis_client, queue, job_id):
    raw = redis_client.hget(queue.keys.job(job_id), "progress")
    return None if raw is None else json.loads(raw)


# -- the call -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "total", "message", "error", "words"),
    [
        ("3", None, "", TypeError, "current as a number"),
        (True, None, "", TypeError, "current as a number"),
        (1, [10], "", TypeError, "total as a number"),
        (-1, None, "", ValueError, "progress() current must be a finite number of 0 or more"),
        (1, -5, "", ValueError, "progress() total must be a finite number of 0 or more"),
        (math.nan, None, "", ValueError, "finite number"),
        (1, math.inf, "", ValueError, "finite number"),
        (1, 2, b"bytes", TypeError, "message as a str, not bytes"),
        (1, 2, None, TypeError, "message as a str, not NoneType"),
    ],
)
def test_bad_arguments_are_refused_at_the_call_with_a_clear_message(
    current, total, message, error, words
):
    with pytest.raises(error) as info:
        checked(current, total, message)

    assert words in str(info.value)


def test_good_arguments_are_kept_and_a_long_message_is_cut_to_200_characters():
    assert checked(0, None, "") == (0, None, "")
    assert checked(2.5, 10, "halfway") == (2.5, 10, "halfway")
    message = checked(1, 1, "x" * 500)[2]
    assert len(message) == 200
    assert message.endswith("…")


def test_fraction_and_percent():
    assert Progress(1, 3).percent == 33
    assert Progress(3, 3).fraction == 1.0
    assert Progress(3, 3).is_final
    assert Progress(5, 3).fraction == 1.0  # an estimate that fell short
    assert Progress(0, 0).fraction == 1.0  # nothing to do is done
    assert Progress(7).fraction is None
    assert Progress(7).percent is None
    assert not Progress(7).is_final


def test_current_job_is_none_outside_a_job():
    assert current_job() is None


def test_a_takes_context_job_is_enqueued_without_its_context_and_called_with_one(queue):
    with pytest.raises(TypeError, match=r"count\(total, pause=0.0\): missing a required .*'total'"):
        jobs.count.delay()

    context = JobContext(Job(id="inline", name=jobs.count.name), MemoryStore())
    assert jobs.count(context, 2) == 2  # called directly: the function as written


# -- the record ---------------------------------------------------------------------------------


def test_a_corrupt_progress_value_reads_as_none_and_leaves_the_job_readable_even_strictly():
    record = {"name": "x", "queue": "default", "status": "running", "progress": "{not json"}

    assert Job.from_hash("a", record).progress is None
    assert Job.from_hash("a", record, strict=False).progress is None
    for bad in ('{"current": -1}', '{"current": "3"}', "[1, 2]", '{"total": 3}'):
        assert Job.from_hash("a", {**record, "progress": bad}).progress is None


def test_an_earlier_attempts_progress_is_not_the_current_attempts():
    value = Progress(4, 10, "", datetime(2024, 1, 1, tzinfo=UTC), attempt=1).to_json()
    record = {"name": "x", "status": "running", "progress": value}

    assert Job.from_hash("a", record).progress.current == 4
    assert Job.from_hash("a", {**record, "retry_count": "1"}).progress is None  # attempt 2


# -- the lease ----------------------------------------------------------------------------------


def test_only_the_holder_of_the_current_lease_writes_progress(queue, redis_client):
    handle = jobs.count.delay(3)
    first = claimed(queue, handle.id, lease=0.05)
    leases = Leases()

    assert leases.record_progress(first, Progress(1, 3, "first").to_json())
    time.sleep(0.1)
    assert leases.recover_expired().requeued == [handle.id]  # its worker was lost
    assert not leases.record_progress(first, Progress(9, 3, "stale").to_json())  # not running
    second = claimed(queue, handle.id)

    assert not leases.record_progress(first, Progress(9, 3, "stale").to_json())  # old token
    assert second.attempt == 2
    assert leases.record_progress(second, Progress(2, 3, "second", attempt=2).to_json())
    assert stored_progress(redis_client, queue, handle.id)["message"] == "second"
    assert queue.get_job(handle.id).progress.message == "second"

    assert leases.complete_job(second, 3)
    assert not leases.record_progress(
        second, Progress(3, 3, "late", attempt=2).to_json()
    )  # finished
    assert queue.get_job(handle.id).progress.message == "second"
    assert_census(queue, redis_client, {handle.id: "completed"})


# -- throttling, in this process with the worker's own code ---------------------------------


def test_a_thousand_reports_in_a_second_make_a_few_writes_and_the_last_one_is_kept(
    queue, redis_client
):
    handle = jobs.count.delay(1000, 0.001)
    leases = CountingLeases()
    started = time.monotonic()

    attempt(claimed(queue, handle.id), leases)

    seconds = time.monotonic() - started
    assert 2 <= len(leases.writes) <= seconds / leases.progress_interval + 3, leases.writes
    assert leases.writes[-1]["current"] == 1000
    # When the writes were sent, not when their values were reported: a loaded machine may
    # run the writing thread late, and it then sends a value reported just before.
    sent = leases.written_at
    gaps = [b - a for a, b in itertools.pairwise(sent[:-1])]  # the final one is written at once
    assert all(gap >= leases.progress_interval * 0.8 for gap in gaps), gaps
    job = queue.get_job(handle.id)
    assert job.status is JobStatus.COMPLETED
    assert (job.progress.current, job.progress.total) == (1000, 1000)
    assert job.progress.message == "step 1000 of 1000"


def test_a_burst_of_reports_makes_at_most_three_writes(queue):
    handle = jobs.count.delay(1000)
    leases = CountingLeases()

    attempt(claimed(queue, handle.id), leases)

    assert 1 <= len(leases.writes) <= 3
    assert leases.writes[-1]["current"] == 1000
    assert queue.get_job(handle.id).progress.current == 1000


def test_progress_never_fails_a_job_when_redis_does_not_answer(configure, caplog):
    configure(REDIS_URL="redis://127.0.0.1:1/0", REDIS_CONNECT_TIMEOUT=1)
    job = Job(id="offline", name=jobs.count.name, args=[40, 0.01], lease_token="t")
    started = time.monotonic()

    with caplog.at_level(logging.DEBUG, logger="django_jobs.worker"), asyncio.Runner() as loop:
        outcome = run_job(job, loop, own_connections=False)

    assert outcome.ok
    assert outcome.result == 40
    assert time.monotonic() - started < 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "its progress could not be recorded" in warnings[0].getMessage()
    assert "the job goes on" in warnings[0].getMessage()


# -- real workers -------------------------------------------------------------------------------


def test_progress_shows_on_the_handle_while_a_worker_runs_the_job(workers, ledger, queue):
    workers.start("--concurrency", "1")
    handle = jobs.report_then_wait.delay("live", reports=2)

    wait_until(lambda: (ledger / "live.reported").exists(), message="the reports")
    # The second report came right after the first: the writer thread writes it a moment later.
    wait_until(
        lambda: handle.refresh().progress is not None and handle.progress.current == 2,
        timeout=5,
        message="the second report on the record",
    )
    assert handle.status is JobStatus.RUNNING
    assert (handle.progress.total, handle.progress.message) == (10, "live 2")
    assert handle.progress.percent == 20
    assert handle.progress.attempt == 1
    assert queue.get_job(handle.id).progress == handle.progress

    (ledger / "live.go").touch()
    assert handle.result(timeout=10) == "live"
    assert handle.refresh().progress.current == 2


def test_a_worker_writes_a_jobs_progress_a_few_times_a_second(workers, queue, redis_client):
    workers.start("--concurrency", "1")
    handle = jobs.count.delay(300, 0.005)
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        value = redis_client.hget(queue.keys.job(handle.id), "progress")
        if value is not None and (not seen or seen[-1] != value):
            seen.append(value)
        if redis_client.hget(queue.keys.job(handle.id), "status") == "completed":
            break
        time.sleep(0.003)

    assert handle.result(timeout=10) == 300
    written = [json.loads(value) for value in seen]
    assert written[-1]["current"] == 300
    at = [w["at"] for w in written]
    running = at[-1] - at[0]  # the job reports for 1.5 s or more
    assert 3 <= len(written) <= running / 0.25 + 3, written
    gaps = [b - a for a, b in itertools.pairwise(at[:-1])]  # the final one is written at once
    assert all(gap >= 0.2 for gap in gaps), gaps
    assert_census(queue, redis_client, {handle.id: "completed"})


def test_async_jobs_side_by_side_each_report_their_own_progress(
    workers, ledger, queue, redis_client
):
    workers.start("--concurrency", "1", "--async-concurrency", "10")
    labels = [f"side-{n}" for n in range(5)]
    started = time.monotonic()
    handles = {label: jobs.async_count.delay(label, steps=20, pause=0.05) for label in labels}

    wait_until(
        lambda: sum(h.refresh().progress is not None for h in handles.values()) >= 3,
        timeout=10,
        message="several jobs reporting at once",
    )
    assert sum(h.status is JobStatus.RUNNING for h in handles.values()) >= 3
    for label, handle in handles.items():
        assert handle.result(timeout=20) == label
    assert time.monotonic() - started < 4.5  # five jobs of a second each, side by side

    lines = (ledger / "async_count.log").read_text().split("\n")
    saw = {line.split()[0]: line.split()[1:] for line in lines if line}
    for label, handle in handles.items():
        assert saw[label] == [handle.id, "True"]  # current_job() was its own at every step
        progress = handle.refresh().progress
        assert (progress.current, progress.total, progress.message) == (20, 20, label)
    assert_census(queue, redis_client, {h.id: "completed" for h in handles.values()})


# -- the testing modes and Django's task API ---------------------------------------------------


def test_immediate_mode_records_each_report_on_the_job_in_its_store(jobs_immediate):
    handle = jobs.count.delay(5)

    assert handle.status is JobStatus.COMPLETED
    assert (handle.progress.current, handle.progress.total) == (5, 5)
    assert handle.progress.message == "step 5 of 5"
    assert jobs_immediate.record(handle.id).progress == handle.progress

    read_back = jobs.read_back.delay()  # read from the store while it ran: written at once
    assert read_back.result()["current"] == 1
    assert read_back.result()["message"] == "half"

    plain = jobs.count_without_context.delay(3)
    assert plain.result() == plain.id
    assert plain.progress.current == 3


def test_a_task_of_djangos_task_api_reports_through_current_job():
    from django_jobs import JobHandle
    from tests.testapp import tasks

    with immediate_jobs():
        result = tasks.count_with_progress.enqueue(4)

        assert result.return_value == 4
        progress = JobHandle.from_id(result.id).progress
        assert (progress.current, progress.total, progress.message) == (4, 4, "task step")


# -- the console and manage.py jobs ----------------------------------------------------------------


@pytest.mark.django_db
def test_the_console_and_the_cli_show_a_running_jobs_progress(admin_client, queue, redis_client):
    enqueued = queue.enqueue(jobs.count.name, [10])  # .delay() would wait for the commit
    job = claimed(queue, enqueued.id)
    Leases().record_progress(job, Progress(3, 10, "copying <files>", datetime.now(UTC)).to_json())
    page = reverse("admin:django_jobs_job_change", args=[job.id])

    html = admin_client.get(page).content.decode()
    assert '<progress max="100" value="30">30%</progress>' in html
    assert "3 of 10 (30%): copying &lt;files&gt;" in html
    assert 'href="?refresh=2">Refresh every 2 s</a>' in html
    assert 'http-equiv="refresh"' not in html

    refreshing = admin_client.get(page + "?refresh=2").content.decode()
    assert '<meta http-equiv="refresh" content="2">' in refreshing
    assert "Refreshing every 2 s until the job is finished" in refreshing

    assert "  progress  3 of 10 (30%): copying <files>\n" in jobs_cli("show", job.id)
    assert jobs_json("show", job.id)["progress"]["current"] == 3

    Leases().complete_job(job, 10)
    done = admin_client.get(page + "?refresh=2").content.decode()
    assert 'http-equiv="refresh"' not in done
    assert "Refresh every" not in done
    assert "3 of 10 (30%)" in done  # what it last reported
