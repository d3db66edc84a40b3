"""Async jobs side by side in one worker process (``runworker --async-concurrency``), as real
``manage.py runworker`` processes: their throughput, each one's timeout and cancellation,
strict priority with sync jobs, and graceful stops."""

import json
import signal
import time

import pytest

from django_jobs import JobCancelled, JobFailed, JobStatus
from django_jobs.worker import Worker
from django_jobs.worker.leases import Leases
from tests.census import assert_census
from tests.processes import wait_until
from tests.testapp import async_jobs, jobs

NAP = "tests.testapp.async_jobs.nap"


def runs(ledger, label):
    path = ledger / f"{label}.runs"
    return path.read_text().split() if path.exists() else []


def spans(ledger):
    """(label, start, end) of each finished attempt of ``nap``."""
    lines = (ledger / "spans.log").read_text().splitlines()
    return [(label, float(start), float(end)) for label, start, end in map(str.split, lines)]


def most_at_once(intervals):
    events = sorted(
        [(start, 1) for _, start, _ in intervals] + [(end, -1) for *_, end in intervals]
    )
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def test_a_claim_of_only_some_names_takes_the_next_job_only_if_it_has_one_of_them(
    queue, redis_client
):
    leases = Leases(queue.prefix)
    first = queue.enqueue(NAP, [0.1], priority="critical")
    sync = queue.enqueue("tests.record", ["s"], priority="high")
    last = queue.enqueue(NAP, [0.1], priority="normal")

    assert leases.claim(only=[NAP]).job.id == first.id
    held = leases.claim(only=[NAP])
    assert (held.job, held.held) == (None, True), "the sync job is next: nothing is skipped"
    assert_census(
        queue,
        redis_client,
        {first.id: "processing", sync.id: "queue:default:high", last.id: "queue:default:normal"},
    )
    acked, claim = leases.complete_and_claim(queue.get_job(first.id), None, only=[NAP])
    assert (acked, claim.job, claim.held) == (True, None, True)
    assert leases.claim().job.id == sync.id, "a claim of any job takes it"
    assert leases.claim(only=[NAP]).job.id == last.id
    empty = leases.claim(only=[NAP])
    assert (empty.job, empty.held) == (None, False)


def test_two_hundred_async_jobs_of_half_a_second_finish_together_in_one_process(
    workers, queue, redis_client
):
    queue.enqueue_many([queue.build_job(NAP, [0.5]) for _ in range(200)])
    ids = [job.id for job in queue.list_jobs("pending", limit=1000)]
    assert len(ids) == 200
    started = time.monotonic()

    proc = workers.start("--concurrency", "1", "--burst")

    assert proc.wait(timeout=60) == 0, workers.logs()
    elapsed = time.monotonic() - started
    # One at a time they would take 100 s; 100 at a time, two rounds of 0.5 s and start-up.
    assert elapsed < 15, f"{elapsed:.1f}s"
    done = queue.get_jobs(ids)
    assert {job.status for job in done.values()} == {JobStatus.COMPLETED}
    assert {job.worker_id.rsplit(":", 1)[1] for job in done.values()} == {"0"}, "one process"
    assert_census(queue, redis_client, dict.fromkeys(ids, "completed"))


def test_a_process_runs_at_most_async_concurrency_jobs_at_once(workers, ledger, queue):
    handles = [async_jobs.nap.delay(0.4, label=f"n{i}") for i in range(20)]

    proc = workers.start("--concurrency", "1", "--async-concurrency", "5", "--burst")

    assert proc.wait(timeout=30) == 0, workers.logs()
    assert all(h.refresh().status is JobStatus.COMPLETED for h in handles)
    assert 2 <= most_at_once(spans(ledger)) <= 5


def test_an_async_job_past_its_timeout_fails_and_is_retried_while_the_others_finish(
    workers, ledger, queue
):
    workers.start("--concurrency", "1")
    others = [async_jobs.nap.using(timeout=30).delay(2, label=f"o{i}") for i in range(5)]
    slow = async_jobs.nap.using(timeout=1, max_retries=1).delay(30, label="slow")

    with pytest.raises(JobFailed, match="JobTimeout") as failed:
        slow.result(timeout=20)

    assert [e["error"].split(":")[0] for e in failed.value.job.errors] == ["JobTimeout"] * 2
    assert runs(ledger, "slow") == ["start", "start"], "stopped each time, never finished"
    for i, handle in enumerate(others):
        assert handle.result(timeout=10) == f"o{i}"
        job = handle.refresh().job
        assert (job.retry_count, job.lost_count) == (0, 0)
        assert runs(ledger, f"o{i}") == ["start", "finish"], "not stopped with the slow one"
    assert "killing its process" not in workers.logs()


def test_cancelling_a_running_async_job_stops_it_and_not_the_others(workers, ledger, queue):
    workers.start("--concurrency", "1")
    others = [async_jobs.nap.delay(2, label=f"o{i}") for i in range(3)]
    victim = async_jobs.nap.delay(30, label="victim")
    wait_until(lambda: runs(ledger, "victim"), message="the job to start")

    assert victim.cancel() == "requested"

    with pytest.raises(JobCancelled):
        victim.result(timeout=10)
    assert runs(ledger, "victim") == ["start"]
    assert queue.get_job(victim.id).status is JobStatus.CANCELLED
    for i, handle in enumerate(others):
        assert handle.result(timeout=10) == f"o{i}"
        assert runs(ledger, f"o{i}") == ["start", "finish"]
        assert handle.refresh().job.retry_count == 0
    assert "killing its process" not in workers.logs()
    assert jobs.add.delay(3, 4).result(timeout=10) == 7, "the worker goes on"


def test_sync_and_async_jobs_mixed_keep_strict_priority_and_never_share_a_process(
    workers, ledger, queue, redis_client
):
    backlog = [
        ("low-a1", "low", True),
        ("normal-s1", "normal", False),
        ("critical-a1", "critical", True),
        ("critical-a2", "critical", True),
        ("high-s1", "high", False),
        ("high-a1", "high", True),
        ("normal-a1", "normal", True),
        ("normal-a2", "normal", True),
        ("critical-s1", "critical", False),
        ("low-s1", "low", False),
        ("high-a2", "high", True),
    ]
    handles = []
    for label, priority, is_async in backlog:
        job = async_jobs.async_record if is_async else jobs.record
        handles.append(job.using(priority=priority).delay(label))

    proc = workers.start("--concurrency", "1", "--burst")

    assert proc.wait(timeout=30) == 0, workers.logs()
    lines = (ledger / "record.log").read_text().split()
    starts = [line for line in lines if not line.endswith("/done")]
    assert starts == [
        "critical-a1",
        "critical-a2",
        "critical-s1",
        "high-s1",
        "high-a1",
        "high-a2",
        "normal-s1",
        "normal-a1",
        "normal-a2",
        "low-a1",
        "low-s1",
    ]
    # A sync job starts only once every async job started before it is done.
    for position, line in enumerate(lines):
        if "-s" in line:
            before = lines[:position]
            started = {x for x in before if "-a" in x and not x.endswith("/done")}
            assert {x + "/done" for x in started} <= set(before), (line, lines)
    # Async jobs of one priority ran side by side.
    assert lines.index("critical-a2") < lines.index("critical-a1/done")
    assert_census(queue, redis_client, {h.id: "completed" for h in handles})


def test_a_sync_job_taken_as_the_async_jobs_end_keeps_its_lease_and_its_timeout(
    workers, ledger, queue
):
    workers.start("--concurrency", "1")
    async_jobs.nap.delay(0.5, label="before-long")
    wait_until(lambda: runs(ledger, "before-long"), message="the async job to start")
    long = jobs.sleep.delay(2.5, label="long")  # longer than the 1 s lease

    assert long.result(timeout=15) == 2.5
    assert long.refresh().job.lost_count == 0, "its lease was renewed"

    async_jobs.nap.delay(0.5, label="before-stuck")
    wait_until(lambda: runs(ledger, "before-stuck"), message="the async job to start")
    stuck = jobs.sleep.using(timeout=1, max_retries=0).delay(60, label="stuck")

    with pytest.raises(JobFailed, match="JobTimeout"):
        stuck.result(timeout=15)


def test_sigterm_lets_the_running_async_jobs_finish_and_exits_zero(workers, ledger, queue):
    proc = workers.start("--concurrency", "1")
    handles = [async_jobs.nap.delay(2.5, label=f"g{i}") for i in range(20)]  # > the 1 s lease
    wait_until(lambda: all(runs(ledger, f"g{i}") for i in range(20)), message="the jobs to start")
    later = jobs.add.delay(1, 1)

    proc.send_signal(signal.SIGTERM)

    assert proc.wait(timeout=15) == 0, workers.logs()
    for handle in handles:
        job = handle.refresh().job
        assert job.status is JobStatus.COMPLETED
        assert job.lost_count == 0, "their leases were renewed while they finished"
    assert later.refresh().status is JobStatus.PENDING, "no job was taken after the signal"


def test_sigterm_gives_async_jobs_still_running_after_the_grace_period_back(
    workers, ledger, queue, redis_client
):
    proc = workers.start("--concurrency", "1", "--grace", "0.5")
    handles = [async_jobs.nap.delay(30, label=f"l{i}") for i in range(5)]
    wait_until(lambda: all(runs(ledger, f"l{i}") for i in range(5)), message="the jobs to start")

    proc.send_signal(signal.SIGTERM)

    assert proc.wait(timeout=15) == 0, workers.logs()
    for handle in handles:
        job = handle.refresh().job
        assert job.status is JobStatus.PENDING
        assert (job.retry_count, job.lost_count) == (0, 0)
    assert_census(queue, redis_client, {h.id: "queue:default:normal" for h in handles})


def test_async_jobs_send_their_signals_once_each_from_the_process_that_ran_them(
    workers, ledger, monkeypatch
):
    monkeypatch.setenv("JOBS_TEST_SIGNALS", "1")
    ok = [async_jobs.nap.delay(0.3, label=f"s{i}") for i in range(3)]
    failing = async_jobs.async_fail.using(max_retries=0).delay("boom")
    cancelled = async_jobs.nap.delay(30, label="cancelled")
    proc = workers.start("--concurrency", "1")
    wait_until(lambda: runs(ledger, "cancelled"), message="the job to start")
    assert cancelled.cancel() == "requested"
    with pytest.raises(JobCancelled):
        cancelled.result(timeout=10)
    with pytest.raises(JobFailed):
        failing.result(timeout=10)
    for handle in ok:
        handle.result(timeout=10)
    assert workers.stop(proc) == 0

    sent = [json.loads(line) for line in (ledger / "signals.jsonl").read_text().splitlines()]

    def signals_of(handle):
        return [entry["signal"] for entry in sent if entry["job"] == handle.id]

    for handle in ok:
        assert signals_of(handle) == ["job_started", "job_succeeded"]
    assert signals_of(failing) == ["job_started", "job_failed", "job_dead"]
    assert signals_of(cancelled) == ["job_started", "job_cancelled"]
    assert {entry["pid"] for entry in sent} - {proc.pid} == {entry["pid"] for entry in sent}


def test_a_worker_refuses_an_async_concurrency_that_is_not_a_positive_integer(jobs_settings):
    for value in (0, -1, 2.5, "3", True):
        with pytest.raises(ValueError, match="async_concurrency must be a positive integer"):
            Worker(concurrency=1, async_concurrency=value)


def test_async_concurrency_must_be_a_positive_integer(workers):
    for value in ("0", "-3", "ten", "2.5"):
        result = workers.run("runworker", "--async-concurrency", value)

        assert result.returncode == 2, result
        assert f"--async-concurrency: must be a positive integer, not '{value}'" in result.stderr
