"""Worker heartbeats: real ``runworker`` processes say who they are and what they run; those that
stop cleanly vanish, those that die are listed as dead once their heartbeat expired. Queues with
ready jobs and no live worker are named by ``stats()`` and by a deployment system check."""

import asyncio
import signal
import socket
import time
from importlib import metadata

import pytest
from django.core.checks import run_checks

from django_jobs import JobQueue
from django_jobs.checks import check_redis, check_unserved_queues
from django_jobs.serialization import utcnow
from django_jobs.store import worker_calls
from django_jobs.store.execute import run
from tests.processes import wait_until
from tests.testapp import jobs

# Heartbeats every second, expiring after 6 s: a loaded machine does not make a live worker
# look dead, and a killed one is seen dead within seconds.
LEASE = 2


@pytest.fixture
def beating(workers):
    workers.settings["LEASE_TIMEOUT"] = LEASE
    return workers


def alive(queue, worker_id):
    return next((w for w in queue.workers() if w.id == worker_id and w.alive), None)


def test_a_running_worker_is_listed_with_what_it_serves_and_the_jobs_it_runs(
    beating, queue, ledger
):
    started = time.time()
    proc = beating.start("--worker-id", "w-1", "--queues", "default,emails", "--concurrency", "2")
    handle = jobs.sleep.delay(30, label="long")
    wait_until(lambda: (ledger / "long.started").exists(), timeout=30, message="the job's start")

    worker = wait_until(
        lambda: (w := alive(queue, "w-1")) and w.jobs and w, timeout=10, message="its heartbeat"
    )

    assert worker.jobs == (handle.id,)
    assert worker.host == socket.gethostname()
    assert worker.pid == proc.pid
    assert worker.queues == ("default", "emails")
    assert worker.concurrency == 2
    assert worker.version == metadata.version("django-jobs")
    assert started - 5 < worker.started_at.timestamp() <= time.time()
    assert time.time() - worker.last_beat.timestamp() < 5
    assert worker.stopping is False
    assert queue.stats()["workers"] == {"live": 1, "dead": 0}
    queue.cancel_job(handle.id)
    wait_until(lambda: alive(queue, "w-1").jobs == (), timeout=10, message="the job's end")


def test_a_worker_that_stops_cleanly_takes_its_heartbeat_with_it(beating, queue, redis_client):
    proc = beating.start("--worker-id", "w-clean", "--concurrency", "1")
    wait_until(lambda: alive(queue, "w-clean"), timeout=30, message="its heartbeat")

    assert beating.stop(proc, signal.SIGTERM) == 0, beating.logs()

    assert queue.workers() == []
    assert not redis_client.exists(queue.keys.worker("w-clean"))
    assert redis_client.zcard(queue.keys.workers) == 0


def test_a_killed_worker_is_listed_as_dead_once_its_heartbeat_expired(beating, queue):
    proc = beating.start("--worker-id", "w-killed", "--concurrency", "1")
    wait_until(lambda: alive(queue, "w-killed"), timeout=30, message="its heartbeat")

    beating.close()  # SIGKILL to its process group: no clean stop
    assert proc.returncode == -signal.SIGKILL
    killed_at = time.time()
    assert alive(queue, "w-killed")  # its heartbeat outlives it for a while

    wait_until(lambda: not alive(queue, "w-killed"), timeout=3 * LEASE + 10, message="expiry")

    assert time.time() - killed_at > LEASE  # not before a lease passed
    (dead,) = queue.workers()
    assert (dead.id, dead.alive, dead.host, dead.jobs) == ("w-killed", False, "", ())
    assert killed_at - 3 < dead.last_beat.timestamp() <= killed_at
    assert queue.stats()["workers"] == {"live": 0, "dead": 1}


def test_a_failing_heartbeat_is_logged_and_the_worker_beats_again(beating, queue, redis_client):
    beating.start("--worker-id", "w-odd", "--concurrency", "1")
    wait_until(lambda: alive(queue, "w-odd"), timeout=30, message="its heartbeat")
    key = queue.keys.worker("w-odd")

    redis_client.delete(key)
    redis_client.set(key, "not a hash")  # its next beats are refused (WRONGTYPE)
    wait_until(lambda: "the heartbeat failed" in beating.logs(), timeout=15, message="the log")
    redis_client.delete(key)

    wait_until(lambda: alive(queue, "w-odd"), timeout=15, message="the next heartbeat")
    assert "WRONGTYPE" in beating.logs()


def test_workers_dead_for_over_an_hour_are_no_longer_listed_and_are_forgotten(queue, redis_client):
    now = utcnow().timestamp()
    fields = worker_calls.worker_record(
        host="h",
        pid=1,
        queues=["default"],
        concurrency=1,
        started_at=now,
        jobs=[],
        version="",
        stopping=False,
    )

    def beat(worker_id, at):
        run(
            worker_calls.worker_beat(
                queue.keys,
                worker_id=worker_id,
                fields=fields,
                now=at,
                ttl=0.05,
                forget_before=at - 3600,
            )
        )

    beat("old", now - 3700)
    beat("recent", now - 60)
    time.sleep(0.1)  # both records expired

    assert [(w.id, w.alive) for w in queue.workers()] == [("recent", False)]
    assert redis_client.zscore(queue.keys.workers, "old") is None  # forgotten by the next beat


def test_stats_name_the_queues_with_ready_jobs_that_no_live_worker_serves(beating, queue):
    jobs.add.delay(1, 2)
    jobs.add.using(queue="emails").delay(1, 2)
    jobs.add.using(queue="emails", delay=60).delay(1, 2)
    assert queue.stats()["unserved"] == {"default": 1, "emails": 1}

    beating.start("--worker-id", "w-default", "--queues", "default", "--concurrency", "1")
    wait_until(lambda: alive(queue, "w-default"), timeout=30, message="its heartbeat")
    wait_until(lambda: queue.stats()["queues"]["default"]["normal"] == 0, message="a drain")

    stats = queue.stats()
    assert stats["unserved"] == {"emails": 1}
    assert stats["workers"] == {"live": 1, "dead": 0}
    assert asyncio.run(JobQueue(queue.prefix).astats())["unserved"] == {"emails": 1}


def deploy_warnings(**options):
    """What ``manage.py check --deploy --tag django_jobs`` reports."""
    return run_checks(tags=["django_jobs"], include_deployment_checks=True, **options)


def test_a_deployment_check_warns_about_queues_no_live_worker_serves(queue):
    assert deploy_warnings() == []
    jobs.add.using(queue="emails").delay(1, 2)

    (warning,) = deploy_warnings()

    assert warning.id == "django_jobs.W004"
    assert warning.msg.startswith("Queue 'emails' has 1 ready job but no live worker serves it")
    assert "runworker --queues emails" in warning.hint
    # Not one of the checks every command runs as it starts (runworker among them).
    assert run_checks(tags=["django_jobs"]) == []


def test_the_deployment_check_says_nothing_more_when_redis_does_not_answer(queue, configure):
    jobs.add.using(queue="emails").delay(1, 2)
    configure(REDIS_URL="redis://127.0.0.1:1/0")

    assert check_unserved_queues() == []
    assert [m.id for m in check_redis()] == ["django_jobs.W001"]
