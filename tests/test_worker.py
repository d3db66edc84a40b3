"""The worker, as real ``manage.py runworker`` processes."""

import os
import signal
import time

import pytest

from django_jobs import JobCancelled, JobFailed, JobStatus
from django_jobs.worker.leases import Leases
from tests.census import assert_census
from tests.processes import wait_until
from tests.testapp import jobs


def test_delayed_job_returns_its_result_through_a_running_worker(workers):
    workers.start("--concurrency", "1")

    assert jobs.add.delay(2, 3).result(timeout=10) == 5


def test_async_job_runs_on_the_worker(workers):
    workers.start("--concurrency", "1")

    assert jobs.async_add.delay(20, 22).result(timeout=10) == 42


def test_worker_started_after_a_mixed_backlog_takes_jobs_by_priority_then_fifo(
    workers, ledger, queue, redis_client
):
    backlog = [
        ("low-1", "low"),
        ("normal-1", "normal"),
        ("critical-1", "critical"),
        ("high-1", "high"),
        ("low-2", "low"),
        ("critical-2", "critical"),
        ("normal-2", "normal"),
        ("high-2", "high"),
    ]
    handles = [jobs.record.using(priority=p).delay(label) for label, p in backlog]

    proc = workers.start("--concurrency", "1", "--burst")

    assert proc.wait(timeout=20) == 0
    order = (ledger / "record.log").read_text().split()
    assert order == [
        "critical-1",
        "critical-2",
        "high-1",
        "high-2",
        "normal-1",
        "normal-2",
        "low-1",
        "low-2",
    ]
    assert_census(queue, redis_client, {h.id: "completed" for h in handles})


def test_failing_job_is_retried_then_lands_in_dead_letter_with_each_attempts_error(
    workers, queue, redis_client
):
    workers.start("--concurrency", "1")
    handle = jobs.fail.using(max_retries=2).delay("boom")

    with pytest.raises(JobFailed) as failed:
        handle.result(timeout=20)

    job = failed.value.job
    assert job.status is JobStatus.FAILED
    assert failed.value.error == "ValueError: boom"
    assert "raise ValueError(message)" in failed.value.remote_traceback
    assert [(e["attempt"], e["error"]) for e in job.errors] == [
        (1, "ValueError: boom"),
        (2, "ValueError: boom"),
        (3, "ValueError: boom"),
    ]
    assert all("Traceback" in e["traceback"] for e in job.errors)
    assert_census(queue, redis_client, {job.id: "dead"})


def test_job_running_past_its_timeout_is_stopped_and_the_worker_goes_on(workers):
    workers.start("--concurrency", "1")
    started = time.monotonic()
    stuck = jobs.sleep.using(timeout=1, max_retries=0).delay(60)
    after = jobs.add.delay(1, 1)

    with pytest.raises(JobFailed, match="JobTimeout"):
        stuck.result(timeout=15)
    assert after.result(timeout=10) == 2
    assert time.monotonic() - started < 10


def test_sigterm_lets_the_running_job_finish_and_exits_zero(workers, ledger):
    proc = workers.start("--concurrency", "1")
    handle = jobs.sleep.delay(2.5, label="graceful")  # longer than the 1 s lease
    wait_until(lambda: (ledger / "graceful.started").exists(), message="the job to start")

    proc.send_signal(signal.SIGTERM)

    assert proc.wait(timeout=15) == 0
    job = handle.refresh().job
    assert job.status is JobStatus.COMPLETED
    assert job.lost_count == 0, "its lease was renewed while it finished"
    assert (ledger / "graceful.finished").exists()


def test_sigterm_gives_a_job_still_running_after_the_grace_period_back_to_its_queue(
    workers, ledger, queue, redis_client
):
    proc = workers.start("--concurrency", "1", "--grace", "0.5")
    waiting = jobs.add.delay(1, 2)  # taken first, so the long job is not at the head by chance
    assert waiting.result(timeout=10) == 3
    handle = jobs.sleep.delay(30, label="long")
    wait_until(lambda: (ledger / "long.started").exists(), message="the job to start")
    later = jobs.add.delay(2, 2)

    proc.send_signal(signal.SIGTERM)

    assert proc.wait(timeout=15) == 0
    job = queue.get_job(handle.id)
    assert job.status is JobStatus.PENDING
    assert job.retry_count == 0
    assert job.lost_count == 0
    assert queue.list_jobs("pending")[0].id == handle.id, "back at the head of its list"
    assert_census(
        queue,
        redis_client,
        {
            waiting.id: "completed",
            handle.id: "queue:default:normal",
            later.id: "queue:default:normal",
        },
    )


def test_job_of_a_killed_worker_is_completed_by_another_and_the_late_ack_is_refused(
    workers, ledger, queue, redis_client
):
    first = workers.start("--concurrency", "1", "--worker-id", "first")
    handle = jobs.sleep.delay(2, label="kill")
    wait_until(lambda: (ledger / "kill.started").exists(), message="the job to start")
    seen_by_first = queue.get_job(handle.id)
    assert seen_by_first.worker_id == "first:0"

    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    workers.start("--concurrency", "1", "--worker-id", "second")

    assert handle.result(timeout=20) == 2
    job = queue.get_job(handle.id)
    assert job.worker_id == "second:0"
    assert job.lost_count == 1
    # The first worker's late acknowledgement, as it would have sent it.
    assert Leases(queue.prefix).complete_job(seen_by_first, "late") is False
    assert queue.get_job(handle.id).result == 2
    assert queue.stats()["counters"]["stale_acks"] == 1
    assert_census(queue, redis_client, {handle.id: "completed"})


def test_cpu_bound_job_keeps_its_lease_while_its_process_lives(workers, ledger, queue):
    workers.start("--concurrency", "1", "--worker-id", "busy")
    handle = jobs.spin.using(timeout=30).delay(3, "spin")
    wait_until(lambda: (ledger / "spin.started").exists(), message="the job to start")
    workers.start("--concurrency", "1", "--worker-id", "idle")

    assert handle.result(timeout=20) == "spin"
    job = queue.get_job(handle.id)
    assert job.lost_count == 0, "the lease (1 s) never expired during the 3 s job"
    assert job.worker_id == "busy:0"


def test_cancelling_a_running_job_stops_it(workers, ledger, queue, redis_client):
    workers.start("--concurrency", "1")
    handle = jobs.sleep.delay(30, label="cancel")
    wait_until(lambda: (ledger / "cancel.started").exists(), message="the job to start")

    assert handle.cancel() == "requested"

    with pytest.raises(JobCancelled):
        handle.result(timeout=10)
    assert not (ledger / "cancel.finished").exists()
    assert jobs.add.delay(3, 4).result(timeout=10) == 7, "the worker goes on"
    assert queue.get_job(handle.id).status is JobStatus.CANCELLED


def test_unreadable_jobs_land_in_dead_letter_and_the_worker_keeps_serving(
    workers, queue, redis_client
):
    unknown = queue.enqueue("no.such.job", max_retries=0)
    corrupt = jobs.add.delay(1, 1)
    redis_client.hset(queue.keys.job(corrupt.id), "kwargs", '["not", "a", "dict"]')
    not_json = jobs.not_json.delay()
    crash = jobs.crash.using(max_retries=0).delay()
    good = jobs.add.delay(2, 2)

    proc = workers.start("--concurrency", "1", "--burst")

    assert proc.wait(timeout=20) == 0
    assert queue.get_job(good.id).result == 4
    assert "UnregisteredJob: no job named 'no.such.job'" in queue.get_job(unknown.id).error
    assert "'kwargs' must be a dict" in queue.get_job(corrupt.id).error
    assert "NotJSONSerializable: the return value" in queue.get_job(not_json.id).error
    assert "WorkerCrashed" in queue.get_job(crash.id).error
    assert_census(
        queue,
        redis_client,
        {
            unknown.id: "dead",
            corrupt.id: "dead",
            not_json.id: "dead",
            crash.id: "dead",
            good.id: "completed",
        },
    )


def test_idle_worker_starts_a_new_job_within_milliseconds(workers, queue):
    workers.start("--concurrency", "1")
    assert jobs.add.delay(0, 0).result(timeout=10) == 0
    time.sleep(1.5)  # idle, blocked on the wake-up list

    handle = jobs.add.delay(1, 1)
    handle.result(timeout=5)

    job = handle.refresh().job
    assert (job.started_at - job.created_at).total_seconds() < 0.5


def test_a_child_process_keeps_what_it_starts_with_out_of_garbage_collections(workers):
    # A collection of an older generation walking the objects a forked child inherited would
    # hold up a job for milliseconds: the child freezes them as it starts.
    workers.start("--concurrency", "1")

    assert jobs.frozen_objects.delay().result(timeout=10) > 10_000


def test_delayed_job_is_run_when_due_and_not_before(workers):
    workers.start("--concurrency", "1")
    handle = jobs.add.using(delay=1.2).delay(1, 2)

    time.sleep(0.8)
    assert handle.refresh().status is JobStatus.PENDING
    assert handle.result(timeout=10) == 3
    assert handle.job.started_at >= handle.job.scheduled_at


def test_max_jobs_stops_the_worker_after_that_many(workers, queue):
    handles = [jobs.add.delay(i, i) for i in range(3)]

    proc = workers.start("--concurrency", "1", "--max-jobs", "2")

    assert proc.wait(timeout=20) == 0
    assert [h.refresh().status for h in handles] == [
        JobStatus.COMPLETED,
        JobStatus.COMPLETED,
        JobStatus.PENDING,
    ]


def test_worker_logs_one_line_per_job_start_and_finish(workers):
    handle = jobs.add.delay(1, 2)
    proc = workers.start("--concurrency", "1", "--burst")
    assert proc.wait(timeout=20) == 0

    lines = [line for line in workers.output(proc).splitlines() if handle.id in line]

    assert len(lines) == 2
    assert "tests.testapp.jobs.add attempt 1 started" in lines[0]
    assert "tests.testapp.jobs.add attempt 1 completed after" in lines[1]


def test_several_processes_share_the_work(workers, ledger):
    handles = [jobs.sleep.delay(0.5, label=f"p{i}") for i in range(4)]

    proc = workers.start("--concurrency", "4", "--burst")

    assert proc.wait(timeout=20) == 0
    assert all(h.refresh().status is JobStatus.COMPLETED for h in handles)
    # Side by side, not one after the other (a wall-clock bound would depend on the machine's
    # load): the last of the four started before the first finished.
    assert max(h.job.started_at for h in handles) < min(h.job.finished_at for h in handles)
    assert len({h.job.worker_id for h in handles}) > 1


def test_unknown_queue_on_the_command_line_is_an_error(workers):
    proc = workers.start("--queues", "nope", "--burst")

    assert proc.wait(timeout=20) == 1
    assert "Unknown queue(s) nope" in workers.output(proc)


def test_a_second_signal_exits_at_once_and_the_lease_brings_the_job_back(workers, ledger, queue):
    proc = workers.start("--concurrency", "1")
    handle = jobs.sleep.delay(30, label="twice")
    wait_until(lambda: (ledger / "twice.started").exists(), message="the job to start")

    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)

    assert proc.wait(timeout=5) == 1
    assert handle.refresh().status is JobStatus.RUNNING
    time.sleep(1.2)  # the 1 s lease runs out
    assert Leases(queue.prefix).recover_expired().requeued == [handle.id]


def test_sigint_and_a_forwarded_sigterm_are_one_graceful_stop(workers, ledger):
    proc = workers.start("--concurrency", "1")
    handle = jobs.sleep.delay(1, label="forwarded")
    wait_until(lambda: (ledger / "forwarded.started").exists(), message="the job to start")

    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGTERM)

    assert proc.wait(timeout=15) == 0
    assert handle.refresh().status is JobStatus.COMPLETED
