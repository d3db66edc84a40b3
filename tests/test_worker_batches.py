"""A worker process that leases a batch of jobs in one call (a deep backlog of quick jobs):
its crash, a graceful stop, a job of higher priority and a cancellation, while it holds jobs it
has not started. Real ``runworker`` processes, a backlog queued before they start."""

import os
import signal
import time

from django_jobs import JobPriority, JobStatus
from django_jobs.handle import Cancellation
from django_jobs.worker.child import BATCH
from tests.census import assert_census
from tests.processes import wait_until
from tests.testapp import jobs

# Deeper than a batch: the first claim leases BATCH jobs, the head one and BATCH - 1 after it.
BACKLOG = BATCH + 4


def leased(queue, redis_client) -> int:
    return redis_client.zcard(queue.keys.processing)


def test_a_killed_process_s_unstarted_jobs_go_back_without_an_attempt_counted(
    workers, queue, redis_client
):
    killer = jobs.kill_self.using(max_retries=0).delay()
    adds = [jobs.add.delay(i, 1) for i in range(BACKLOG)]

    proc = workers.start("--concurrency", "1", "--burst")

    assert proc.wait(timeout=30) == 0
    assert killer.refresh().job.status is JobStatus.FAILED  # its one attempt crashed
    for i, handle in enumerate(adds):
        job = handle.refresh().job
        assert (job.status, job.result) == (JobStatus.COMPLETED, i + 1)
        assert (job.retry_count, job.lost_count, job.errors) == (0, 0, [])
    logs = workers.logs()
    assert logs.count("leased in a batch but not started when its process ended") == BATCH - 1
    assert_census(
        queue,
        redis_client,
        {killer.id: "dead", **{h.id: "completed" for h in adds}},
    )


def test_a_job_that_kills_its_whole_worker_is_buried_alone_and_its_batch_runs(
    workers, queue, redis_client
):
    # Recovery counts a loss for every job a dead worker held, the unstarted ones of its batch
    # too; those are leased alone afterwards, so only the job that kills each worker it runs in
    # reaches MAX_LOST.
    first = jobs.add.delay(0, 0)  # quick: the claim after it leases a batch, the killer first
    killer = jobs.kill_worker.delay()
    adds = [jobs.add.delay(i, 1) for i in range(BACKLOG)]

    for _ in range(10):
        workers.start("--concurrency", "1", "--burst").wait(timeout=30)
        states = queue.stats()["states"]
        if (states["running"], states["pending"], states["completed"]) == (0, 0, BACKLOG + 1):
            break
        time.sleep(1.2)  # past the 1 s lease of the jobs the killed worker held

    dead = killer.refresh().job
    assert (dead.status, dead.lost_count) == (JobStatus.FAILED, 3)
    lost = []
    for i, handle in enumerate(adds):
        job = handle.refresh().job
        assert (job.status, job.result) == (JobStatus.COMPLETED, i + 1)
        lost.append(job.lost_count)
    assert max(lost) == 1, "lost once, with the killer's batch; then leased alone"
    assert lost.count(1) >= BATCH // 2, "the rest of the killer's batch"
    assert_census(
        queue,
        redis_client,
        {first.id: "completed", killer.id: "dead", **{h.id: "completed" for h in adds}},
    )


def test_sigterm_gives_the_unstarted_jobs_of_a_batch_back_in_their_order(
    workers, ledger, queue, redis_client
):
    head = jobs.sleep.delay(1.5, label="head")  # longer than the 1 s lease: renewed meanwhile
    adds = [jobs.add.delay(i, 1) for i in range(BACKLOG)]
    proc = workers.start("--concurrency", "1")
    wait_until(lambda: (ledger / "head.started").exists(), message="the head job to start")
    assert leased(queue, redis_client) == BATCH

    proc.send_signal(signal.SIGTERM)

    assert proc.wait(timeout=15) == 0
    assert head.refresh().job.status is JobStatus.COMPLETED
    pending = queue.list_jobs("pending", limit=100)
    assert [job.id for job in pending] == [h.id for h in adds], "all back, in their order"
    assert all((job.retry_count, job.lost_count) == (0, 0) for job in pending)
    assert_census(
        queue,
        redis_client,
        {head.id: "completed", **{h.id: "queue:default:normal" for h in adds}},
    )


def test_after_a_slow_job_the_batch_goes_back_and_a_job_of_higher_priority_comes_first(
    workers, ledger, queue, redis_client
):
    head = jobs.sleep.delay(1.0, label="head")
    normal = [jobs.record.delay(f"n-{i}") for i in range(BACKLOG)]
    proc = workers.start("--concurrency", "1", "--burst")
    wait_until(lambda: (ledger / "head.started").exists(), message="the head job to start")
    assert leased(queue, redis_client) == BATCH  # the head job and BATCH - 1 in hand

    critical = jobs.record.using(priority="critical").delay("critical")

    assert proc.wait(timeout=30) == 0
    order = (ledger / "record.log").read_text().split()
    assert order == ["critical", *(f"n-{i}" for i in range(BACKLOG))]
    assert all(h.refresh().job.lost_count == 0 for h in normal)
    assert_census(
        queue,
        redis_client,
        {head.id: "completed", critical.id: "completed", **{h.id: "completed" for h in normal}},
    )


def test_a_job_of_higher_priority_waits_at_most_for_the_quick_jobs_in_hand(
    workers, ledger, queue, redis_client
):
    # Deep enough that the worker (thousands of jobs a second) is still at it when the
    # critical job comes, however long this process waits for its turn on a busy machine.
    backlog = 100 * BATCH
    normal = [jobs.record.delay(f"n-{i}") for i in range(backlog)]
    proc = workers.start("--concurrency", "1", "--burst")
    wait_until(lambda: (ledger / "record.log").exists(), message="the first job to run")

    critical = jobs.record.using(priority="critical").delay("critical")
    # Counted once it is stored: at most these ran before it.
    ran_before = len((ledger / "record.log").read_text().split())

    assert proc.wait(timeout=30) == 0
    order = (ledger / "record.log").read_text().split()
    assert ran_before + 2 * BATCH < backlog, "enqueued while the backlog was deep"
    # After the batch in hand when it was enqueued (and one being leased then), no later.
    assert order.index("critical") <= ran_before + 2 * BATCH
    assert [label for label in order if label != "critical"] == [f"n-{i}" for i in range(backlog)]
    assert_census(
        queue,
        redis_client,
        {critical.id: "completed", **{h.id: "completed" for h in normal}},
    )


def test_a_job_cancelled_while_leased_in_a_batch_is_cancelled_not_run(
    workers, ledger, queue, redis_client
):
    head = jobs.sleep.delay(2.0, label="head")
    records = [jobs.record.delay(f"r-{i}") for i in range(BACKLOG)]
    proc = workers.start("--concurrency", "1", "--burst")
    wait_until(lambda: (ledger / "head.started").exists(), message="the head job to start")
    assert leased(queue, redis_client) == BATCH

    # Leased, so RUNNING as far as Redis knows: its cancellation is requested.
    assert records[2].cancel() is Cancellation.REQUESTED

    assert proc.wait(timeout=30) == 0
    assert records[2].refresh().job.status is JobStatus.CANCELLED
    order = (ledger / "record.log").read_text().split()
    assert order == [f"r-{i}" for i in range(BACKLOG) if i != 2]
    assert_census(
        queue,
        redis_client,
        {
            head.id: "completed",
            records[2].id: "cancelled",
            **{h.id: "completed" for i, h in enumerate(records) if i != 2},
        },
    )


def test_a_job_cancelled_while_its_batch_goes_back_unseen_by_the_supervisor_is_not_run(
    workers, ledger, queue, redis_client
):
    # The supervisor is frozen, so no renewal tells the child of the request: the batch goes
    # back after the slow head job, and the give-back itself must honour the cancellation.
    workers.settings = {**workers.settings, "LEASE_TIMEOUT": 4}
    head = jobs.sleep.delay(1.0, label="head")
    records = [jobs.record.delay(f"r-{i}") for i in range(BACKLOG)]
    proc = workers.start("--concurrency", "1")
    wait_until(lambda: (ledger / "head.started").exists(), message="the head job to start")
    assert leased(queue, redis_client) == BATCH

    os.kill(proc.pid, signal.SIGSTOP)
    try:
        assert records[2].cancel() is Cancellation.REQUESTED
        wait_until(
            lambda: records[2].refresh().job.status is JobStatus.CANCELLED,
            timeout=10,
            message="the job cancelled as its batch went back",
        )
        ready = queue.keys.queue("default", JobPriority.NORMAL)
        assert records[2].id not in redis_client.lrange(ready, 0, -1)
    finally:
        os.kill(proc.pid, signal.SIGCONT)

    wait_until(lambda: all(h.refresh().job.is_finished for h in records), timeout=20)
    order = (ledger / "record.log").read_text().split()
    assert order == [f"r-{i}" for i in range(BACKLOG) if i != 2]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    assert_census(
        queue,
        redis_client,
        {
            head.id: "completed",
            records[2].id: "cancelled",
            **{h.id: "completed" for i, h in enumerate(records) if i != 2},
        },
    )


def test_max_jobs_caps_the_batch_and_leaves_the_rest_queued_in_order(workers, queue, redis_client):
    adds = [jobs.add.delay(i, 1) for i in range(BACKLOG)]
    taken = BATCH // 2 + 1  # fewer than a batch: the claim leases only that many

    proc = workers.start("--concurrency", "1", "--max-jobs", str(taken))

    assert proc.wait(timeout=20) == 0
    assert [h.refresh().status for h in adds] == [JobStatus.COMPLETED] * taken + [
        JobStatus.PENDING
    ] * (BACKLOG - taken)
    assert [job.id for job in queue.list_jobs("pending", limit=100)] == [h.id for h in adds[taken:]]
    assert_census(
        queue,
        redis_client,
        {
            **{h.id: "completed" for h in adds[:taken]},
            **{h.id: "queue:default:normal" for h in adds[taken:]},
        },
    )
