"""Faults inside the worker: records it cannot read, jobs that start processes of their own, and
processes that die in a way nothing could record. Real ``runworker`` processes throughout."""

import contextlib
import os
import pickle
import signal
import time
from pathlib import Path

import pytest
import redis

from django_jobs import JobCancelled, JobFailed, JobStatus
from tests.conftest import REDIS_URL
from tests.processes import wait_until
from tests.testapp import jobs


@pytest.fixture
def raw_client(prefix):
    """A client that returns bytes: the records planted here are not all UTF-8. It deletes the
    test's keys itself (before ``prefix`` would try, with a client that decodes key names)."""
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    keys = list(client.scan_iter(match=f"{prefix}*".encode(), count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def job_key(queue, job_id: bytes) -> bytes:
    return f"{queue.prefix}:job:".encode() + job_id


def plant_lost(raw_client, queue, job_id: bytes, record: dict) -> None:
    """A RUNNING job whose lease ran out a while ago, as a worker that died leaves it."""
    raw_client.hset(job_key(queue, job_id), mapping=record)
    raw_client.zadd(queue.keys.processing, {job_id: time.time() - 10})


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie waiting for its parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_unreadable_lost_jobs_are_dead_lettered_and_recovery_goes_on_for_the_others(
    workers, queue, raw_client
):
    bad_id = b"\xff\xfe" + os.urandom(8).hex().encode()
    readable_fields = {
        "name": "tests.record",
        "queue": "default",
        "priority": "1",
        "status": "running",
        "args": '["bad id"]',
        "kwargs": "{}",
        "lease_token": "gone",
        "worker_id": "dead-worker:0",
    }
    plant_lost(raw_client, queue, bad_id, readable_fields)
    garbage_id = b"garbage-" + os.urandom(8).hex().encode()
    garbage_fields = {
        "name": b"\x80\x81",
        "queue": b"\xc3\x28",
        "priority": b"\xff",
        "status": "running",
        "args": pickle.dumps(("not", "json")),
        "lease_token": "gone",
    }
    plant_lost(raw_client, queue, garbage_id, garbage_fields)
    proc = workers.start("--concurrency", "1")
    wait_until(
        lambda: raw_client.zcard(queue.keys.processing) == 0,
        message="the worker's recovery to take the planted jobs",
    )

    # Only now does a readable job lose its worker: recovery must still be running.
    later = jobs.record.using(delay=3600).delay("after")
    raw_client.zrem(queue.keys.scheduled, later.id)
    raw_client.hset(
        queue.keys.job(later.id),
        mapping={"status": "running", "lease_token": "gone", "worker_id": "dead-worker:1"},
    )
    raw_client.zadd(queue.keys.processing, {later.id: time.time() - 1})

    assert later.result(timeout=15) == "after", workers.logs()
    assert later.refresh().status is JobStatus.COMPLETED
    assert later.job.lost_count == 1
    assert set(raw_client.zrange(queue.keys.dead, 0, -1)) == {bad_id, garbage_id}
    for job_id in (bad_id, garbage_id):
        record = raw_client.hgetall(job_key(queue, job_id))
        assert record[b"status"] == b"failed"
        assert record[b"error"].startswith(b"unreadable record:"), record[b"error"]
    assert b"is not UTF-8" in raw_client.hget(job_key(queue, bad_id), "error")
    assert proc.poll() is None, "the worker goes on serving"


@pytest.mark.parametrize("stop", ["timeout", "cancel", "shutdown"])
def test_a_job_the_worker_stops_takes_its_own_subprocesses_with_it(workers, ledger, stop):
    proc = workers.start("--concurrency", "1", "--grace", "0.2")
    timeout = 1 if stop == "timeout" else 60
    handle = jobs.spawn_and_hang.using(timeout=timeout, max_retries=0).delay(60, "hang")
    pid_file = ledger / "hang.pid"
    pid = int(wait_until(lambda: pid_file.exists() and pid_file.read_text(), message="its pid"))
    try:
        if stop == "timeout":
            with pytest.raises(JobFailed, match="JobTimeout"):
                handle.result(timeout=15)
        elif stop == "cancel":
            assert handle.cancel() == "requested"
            with pytest.raises(JobCancelled):
                handle.result(timeout=10)
        else:  # SIGTERM, and the job outlives the grace period
            assert workers.stop(proc) == 0

        wait_until(lambda: not alive(pid), timeout=5, message=f"the job's subprocess {pid} to die")
        if stop != "shutdown":
            assert jobs.add.delay(1, 1).result(timeout=10) == 2, "the worker goes on"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_burst_exits_zero_when_the_crash_of_a_job_was_recorded(workers):
    crashed = jobs.kill_self.using(max_retries=0).delay()
    proc = workers.start("--concurrency", "1", "--burst")

    assert proc.wait(timeout=20) == 0, workers.logs()
    assert crashed.refresh().status is JobStatus.FAILED
    assert "WorkerCrashed" in crashed.job.error


def test_burst_exits_non_zero_and_says_why_when_a_crashed_job_is_left_running(
    workers, queue, raw_client
):
    # A lease long enough that no recovery takes the job while the test looks.
    workers.settings = {**workers.settings, "LEASE_TIMEOUT": 30}
    crashed = jobs.kill_self_unrecordable.delay("unrecordable")
    proc = workers.start("--concurrency", "1", "--burst")

    assert proc.wait(timeout=30) == 1, workers.logs()
    log = workers.output(proc)
    assert "still RUNNING" in log, log
    assert crashed.id in log
    assert raw_client.hget(queue.keys.job(crashed.id), "status") == b"running"
    assert raw_client.zscore(queue.keys.processing, crashed.id) is not None
