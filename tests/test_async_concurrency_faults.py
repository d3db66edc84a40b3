"""Faults around async jobs that run side by side in one worker process: the process killed with
its jobs, a lease lost under one of them, and a job that blocks the event loop. Real
``runworker`` processes throughout."""

import os
import signal
from pathlib import Path

import pytest

from django_jobs import JobCancelled, JobFailed, JobStatus
from tests.census import assert_census
from tests.processes import wait_until
from tests.testapp import async_jobs


def runs(ledger, label):
    path = ledger / f"{label}.runs"
    return path.read_text().split() if path.exists() else []


def child_pids(pid: int) -> list[int]:
    """The worker processes a supervisor started (its direct children)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def test_all_async_jobs_of_a_process_killed_with_sigkill_come_back_and_complete_once(
    workers, ledger, queue, redis_client
):
    proc = workers.start("--concurrency", "1")
    labels = [f"k{i}" for i in range(30)]
    handles = [async_jobs.nap.delay(3, label=label) for label in labels]
    wait_until(lambda: all(runs(ledger, label) for label in labels), message="the jobs to start")
    (child,) = child_pids(proc.pid)

    os.kill(child, signal.SIGKILL)

    for label, handle in zip(labels, handles, strict=True):
        assert handle.result(timeout=30) == label, workers.logs()
        assert runs(ledger, label) == ["start", "start", "finish"]
        job = handle.refresh().job
        assert job.retry_count == 1
        assert job.errors[0]["error"].startswith("WorkerCrashed")
    assert proc.poll() is None, "the worker goes on with a new process"
    assert_census(queue, redis_client, {h.id: "completed" for h in handles})


def test_an_async_job_whose_lease_was_lost_is_stopped_and_its_result_never_recorded(
    workers, ledger, queue, redis_client
):
    proc = workers.start("--concurrency", "1")
    others = [async_jobs.nap.delay(3, label=f"o{i}") for i in range(3)]
    taken = async_jobs.nap.delay(3, label="taken")
    wait_until(lambda: runs(ledger, "taken"), message="the job to start")
    # Another worker has it now, as after a recovery: its token is not this worker's.
    redis_client.hset(queue.keys.job(taken.id), "lease_token", "another-worker")
    redis_client.zrem(queue.keys.processing, taken.id)

    for i, handle in enumerate(others):
        assert handle.result(timeout=15) == f"o{i}"
    wait_until(lambda: "abandoned" in workers.output(proc), message="the job to be stopped")

    assert runs(ledger, "taken") == ["start"], "stopped before it finished"
    record = redis_client.hgetall(queue.keys.job(taken.id))
    assert (record["status"], record["lease_token"]) == ("running", "another-worker")
    assert redis_client.get(queue.keys.result(taken.id)) is None
    assert queue.stats()["counters"]["stale_acks"] == 0, "no outcome was even sent"
    assert [h.refresh().job.retry_count for h in others] == [0, 0, 0]


def test_an_async_job_that_blocks_the_event_loop_past_its_timeout_is_killed_with_its_process(
    workers, ledger, queue, redis_client
):
    proc = workers.start("--concurrency", "1")
    others = [async_jobs.nap.using(timeout=60).delay(4, label=f"o{i}") for i in range(3)]
    wait_until(lambda: all(runs(ledger, f"o{i}") for i in range(3)), message="them to start")
    stuck = async_jobs.block.using(timeout=1, max_retries=0).delay(60, "stuck")

    with pytest.raises(JobFailed, match="JobTimeout"):
        stuck.result(timeout=20)
    assert queue.get_job(stuck.id).status is JobStatus.FAILED
    for i, handle in enumerate(others):
        assert handle.result(timeout=20) == f"o{i}", workers.logs()
        job = handle.refresh().job
        # Given back to its queue, not failed: it was not the one that blocked.
        assert (job.retry_count, job.lost_count) == (0, 0)
        assert runs(ledger, f"o{i}") == ["start", "start", "finish"]
    assert "killing its process" in workers.output(proc)
    assert_census(queue, redis_client, {stuck.id: "dead", **{h.id: "completed" for h in others}})


def test_a_cancelled_async_job_that_ignores_its_cancellation_is_stopped_with_its_process(
    workers, ledger, queue, redis_client
):
    proc = workers.start("--concurrency", "1")
    other = async_jobs.nap.delay(6, label="other")
    stubborn = async_jobs.stubborn.delay(60, "stubborn")
    wait_until(lambda: runs(ledger, "stubborn"), message="the job to start")

    assert stubborn.cancel() == "requested"

    with pytest.raises(JobCancelled):
        stubborn.result(timeout=15)
    assert runs(ledger, "stubborn") == ["start", "ignored"]
    assert other.result(timeout=20) == "other"
    assert runs(ledger, "other") == ["start", "start", "finish"], "back to its queue, run again"
    assert other.refresh().job.retry_count == 0
    assert "killing its process" in workers.output(proc)
    assert_census(queue, redis_client, {stubborn.id: "cancelled", other.id: "completed"})


def test_async_jobs_of_a_worker_killed_whole_are_recovered_by_another_and_complete_once(
    workers, ledger, queue, redis_client
):
    first = workers.start("--concurrency", "1", "--worker-id", "first")
    labels = [f"w{i}" for i in range(20)]
    handles = [async_jobs.nap.delay(3, label=label) for label in labels]
    wait_until(lambda: all(runs(ledger, label) for label in labels), message="the jobs to start")

    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    workers.start("--concurrency", "1", "--worker-id", "second")

    for label, handle in zip(labels, handles, strict=True):
        assert handle.result(timeout=30) == label, workers.logs()
        job = handle.refresh().job
        assert (job.worker_id, job.lost_count, job.retry_count) == ("second:0", 1, 0)
        assert runs(ledger, label) == ["start", "start", "finish"]
    assert_census(queue, redis_client, {h.id: "completed" for h in handles})


def test_async_jobs_that_end_while_redis_is_down_are_recorded_once_it_is_back(
    workers, private_redis, ledger, queue
):
    # Leases long enough to outlive the outage: nothing is recovered, all is recorded late.
    workers.settings = {**workers.settings, "LEASE_TIMEOUT": 30}
    labels = [f"r{i}" for i in range(20)]
    handles = [async_jobs.nap.delay(1, label=label) for label in labels]
    proc = workers.start("--concurrency", "1")
    wait_until(lambda: all(runs(ledger, label) for label in labels), message="the jobs to start")

    private_redis.stop()
    try:
        wait_until(
            lambda: all(runs(ledger, label) == ["start", "finish"] for label in labels),
            message="the jobs to end while Redis is down",
        )
    finally:
        private_redis.start()

    for label, handle in zip(labels, handles, strict=True):
        assert handle.result(timeout=30) == label, workers.logs()
        job = handle.refresh().job
        assert (job.retry_count, job.lost_count) == (0, 0)
        assert runs(ledger, label) == ["start", "finish"], "each ran once"
    assert async_jobs.nap.delay(0, label="after").result(timeout=15) == "after"
    assert proc.poll() is None
    assert "Redis answers again" in workers.output(proc)
