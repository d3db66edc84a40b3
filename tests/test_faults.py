"""Faults: Redis crashing and coming back, and what an idle worker costs Redis."""

import time

from django_jobs import JobStatus
from tests.census import assert_census
from tests.processes import wait_until
from tests.redis_server import command_calls
from tests.testapp import jobs


def round_trips(client) -> int:
    """Requests clients sent (the commands that scripts run inside do not count)."""
    return command_calls(client, "evalsha", "eval", "blpop", "blmove", "script|load", "info")


def test_idle_worker_sends_about_one_request_per_second(private_redis, workers):
    workers.settings = {**workers.settings, "LEASE_TIMEOUT": 60}  # recovery every 30 s
    workers.start("--concurrency", "2")
    client = private_redis.client()
    assert jobs.add.delay(1, 1).result(timeout=10) == 2
    time.sleep(1.5)

    before = round_trips(client)
    time.sleep(10)
    sent = round_trips(client) - before - 1  # less our own INFO

    # About one wake-up wait a second, and a heartbeat every 5 s (worker/heartbeat.py).
    assert sent <= 10 * 1.3 + 2, f"{sent} requests in 10 s of idling"


def test_idle_worker_takes_a_delayed_job_when_it_falls_due(workers):
    workers.start("--concurrency", "1")
    assert jobs.add.delay(0, 0).result(timeout=10) == 0
    time.sleep(1.2)  # idle

    handle = jobs.add.using(delay=0.3).delay(1, 2)

    assert handle.result(timeout=10) == 3
    lateness = (handle.job.started_at - handle.job.scheduled_at).total_seconds()
    assert 0 <= lateness < 0.3


def test_no_job_is_lost_when_redis_crashes_and_restarts_with_aof(
    private_redis, workers, ledger, queue
):
    handles = [jobs.sleep.delay(0.05, label=f"job{i}") for i in range(40)]
    workers.start("--concurrency", "2")
    wait_until(lambda: len(list(ledger.glob("*.finished"))) >= 10, message="some jobs to finish")

    private_redis.kill()
    time.sleep(0.5)
    private_redis.start()

    client = private_redis.client()
    wait_until(
        lambda: client.zcard(queue.keys.completed) == len(handles),
        timeout=30,
        message="every job to complete",
    )
    assert all(h.refresh().status is JobStatus.COMPLETED for h in handles)
    for i in range(len(handles)):
        assert (ledger / f"job{i}.finished").exists()
    assert_census(queue, client, {h.id: "completed" for h in handles})
