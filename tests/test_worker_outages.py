"""A worker whose supervisor freezes, and a worker told to stop while Redis is down or frozen.
Real ``runworker`` processes; the tests that stop Redis use a private redis-server."""

import os
import signal
import time

import pytest

from django_jobs import JobStatus
from tests.processes import wait_until
from tests.testapp import jobs


def test_children_of_a_frozen_supervisor_take_no_job_until_it_answers_again(workers, ledger, queue):
    # Leases of 3 s: a child would take more work after half of that without its supervisor.
    workers.settings = {**workers.settings, "LEASE_TIMEOUT": 3}
    first = jobs.sleep.delay(2.5, label="first")
    rest = [jobs.record.delay(f"r{i}") for i in range(3)]
    proc = workers.start("--concurrency", "1")
    wait_until(lambda: (ledger / "first.started").exists(), message="the first job to start")

    os.kill(proc.pid, signal.SIGSTOP)  # the supervisor only: its child runs on
    try:
        assert first.result(timeout=15) == 2.5, "the running job finishes and is recorded"
        time.sleep(2.0)  # ample time to run the three others, were they taken
        assert not (ledger / "record.log").exists(), "no job taken while nobody renews leases"
        assert {h.refresh().status for h in rest} == {JobStatus.PENDING}
    finally:
        os.kill(proc.pid, signal.SIGCONT)

    assert [h.result(timeout=15) for h in rest] == ["r0", "r1", "r2"]
    assert (ledger / "record.log").read_text().split() == ["r0", "r1", "r2"], "each ran once"
    assert all(queue.get_job(h.id).lost_count == 0 for h in [first, *rest])
    assert "its supervisor has been silent" in workers.output(proc)


@pytest.mark.parametrize("outage", ["down", "frozen"])
def test_sigterm_while_redis_is_out_exits_soon_after_the_grace_period(
    workers, private_redis, ledger, queue, outage
):
    # A long lease: the job must still be RUNNING (left to lease recovery) when Redis is back.
    workers.settings = {**workers.settings, "LEASE_TIMEOUT": 60}
    handle = jobs.sleep.delay(60, label="long")
    proc = workers.start("--concurrency", "2", "--grace", "1")
    wait_until(lambda: (ledger / "long.started").exists(), message="the job to start")

    if outage == "down":
        private_redis.stop()
    else:
        os.kill(private_redis.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(0.5)
        stopped_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, workers.logs()
        took = time.monotonic() - stopped_at
    finally:
        if outage == "down":
            private_redis.start()
        else:
            os.kill(private_redis.proc.pid, signal.SIGCONT)

    # Grace 1 s, then at most RECORD_AFTER_STOP (3 s) and its margin (1 s) for what is left.
    assert took < 1 + 3 + 1 + 3, f"took {took:.1f}s\n{workers.logs()}"
    log = workers.output(proc)
    assert "still RUNNING" in log, log
    assert handle.id in log
    assert "lease" in log
    assert queue.get_job(handle.id).status is JobStatus.RUNNING, "left to lease recovery"
