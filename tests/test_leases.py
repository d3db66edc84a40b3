"""Leases: a job taken by a worker comes back if the worker is lost, and a stale worker
can never record an outcome."""

import time

from django_jobs import JobStatus
from django_jobs.worker.leases import Leases
from tests.census import assert_census


def take_and_lose(queue, lease=0.05):
    """Take the next job with a short lease and let the lease run out, as a dead worker would."""
    job = Leases(queue.prefix).dequeue(worker_id="lost-worker", lease=lease)
    time.sleep(lease + 0.05)
    return job


def test_expired_lease_brings_the_job_back_at_the_head_of_its_list(queue, redis_client):
    first = queue.enqueue("a.job", ["first"])
    second = queue.enqueue("a.job", ["second"])
    take_and_lose(queue)

    recovered = Leases(queue.prefix).recover_expired()

    assert recovered.requeued == [first.id]
    assert recovered.buried == []
    stored = queue.get_job(first.id)
    assert stored.status is JobStatus.PENDING
    assert stored.lost_count == 1
    assert stored.retry_count == 0, "a lost worker does not use up a retry"
    assert stored.lease_token is None
    assert_census(
        queue, redis_client, {first.id: "queue:default:normal", second.id: "queue:default:normal"}
    )
    assert Leases(queue.prefix).dequeue().id == first.id
    assert queue.stats()["counters"]["recovered"] == 1


def test_a_live_lease_is_not_recovered(queue, redis_client):
    queue.enqueue("a.job")
    job = Leases(queue.prefix).dequeue(lease=30)

    assert Leases(queue.prefix).recover_expired().requeued == []
    assert_census(queue, redis_client, {job.id: "processing"})


def test_job_whose_worker_was_lost_too_often_is_buried_as_a_poison_pill(
    jobs_settings, queue, redis_client
):
    jobs_settings.DJANGO_JOBS = {**jobs_settings.DJANGO_JOBS, "MAX_LOST": 2}
    job = queue.enqueue("a.job")
    take_and_lose(queue)
    assert Leases(queue.prefix).recover_expired().requeued == [job.id]
    take_and_lose(queue)

    assert Leases(queue.prefix).recover_expired().buried == [job.id]

    stored = queue.get_job(job.id)
    assert stored.status is JobStatus.FAILED
    assert "lost 2 times" in stored.error
    assert stored.errors[-1]["worker_id"] == "lost-worker"
    assert_census(queue, redis_client, {job.id: "dead"})


def test_stale_worker_cannot_complete_a_job_another_worker_has(queue, redis_client):
    job = queue.enqueue("a.job")
    stale = take_and_lose(queue)
    Leases(queue.prefix).recover_expired()
    current = Leases(queue.prefix).dequeue(worker_id="new-worker", lease=30)
    assert current.id == stale.id

    assert Leases(queue.prefix).complete_job(stale, "stale result") is False
    assert Leases(queue.prefix).fail_job(stale, "stale failure") is None
    assert queue.get_job(job.id).status is JobStatus.RUNNING

    assert Leases(queue.prefix).complete_job(current, "fresh result") is True
    assert Leases(queue.prefix).complete_job(current, "second completion") is False
    stored = queue.get_job(job.id)
    assert stored.status is JobStatus.COMPLETED
    assert stored.result == "fresh result"
    assert stored.worker_id == "new-worker"
    assert stored.errors == []
    assert queue.stats()["counters"]["stale_acks"] == 3
    assert_census(queue, redis_client, {job.id: "completed"})


def test_stale_worker_cannot_complete_a_job_that_was_recovered_but_not_taken(queue):
    job = queue.enqueue("a.job")
    stale = take_and_lose(queue)
    Leases(queue.prefix).recover_expired()

    assert Leases(queue.prefix).complete_job(stale, "late") is False
    assert queue.get_job(job.id).status is JobStatus.PENDING


def test_extending_a_lease_moves_its_deadline(queue, redis_client):
    queue.enqueue("a.job")
    queue.enqueue("a.job")
    jobs = [Leases(queue.prefix).dequeue(lease=1), Leases(queue.prefix).dequeue(lease=1)]
    before = time.time()

    state = Leases(queue.prefix).extend_lease(jobs, lease=60)

    assert state.lost == []
    assert state.cancel_requested == []
    for job in jobs:
        assert redis_client.zscore(queue.keys.processing, job.id) >= before + 60


def test_extending_a_lease_that_was_lost_reports_it(queue, redis_client):
    queue.enqueue("a.job")
    stale = take_and_lose(queue)
    Leases(queue.prefix).recover_expired()

    state = Leases(queue.prefix).extend_lease([stale], lease=60)

    assert state.lost == [stale.id]
    assert_census(queue, redis_client, {stale.id: "queue:default:normal"})


def test_recovery_is_safe_when_run_by_many_workers_at_once(queue, redis_client):
    from concurrent.futures import ThreadPoolExecutor

    ids = [queue.enqueue("a.job", [i]).id for i in range(50)]
    for _ in ids:
        Leases(queue.prefix).dequeue(lease=0.05)
    time.sleep(0.1)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: Leases(queue.prefix).recover_expired(), range(4)))

    requeued = [i for r in results for i in r.requeued]
    assert sorted(requeued) == sorted(ids)
    assert_census(queue, redis_client, dict.fromkeys(ids, "queue:default:normal"))
