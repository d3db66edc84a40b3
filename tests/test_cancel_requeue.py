"""Cancellation, and bringing jobs back from the dead-letter queue."""

from django_jobs import JobStatus, job
from django_jobs.worker.leases import Leases
from tests.census import assert_census


def test_cancelling_a_pending_job_takes_it_off_its_list(queue, redis_client):
    keep = queue.enqueue("a.job")
    job = queue.enqueue("a.job")

    assert queue.cancel_job(job.id) == "cancelled"

    stored = queue.get_job(job.id)
    assert stored.status is JobStatus.CANCELLED
    assert stored.finished_at is not None
    assert 0 < redis_client.ttl(queue.keys.job(job.id)) <= 7 * 24 * 3600
    assert_census(queue, redis_client, {keep.id: "queue:default:normal", job.id: "cancelled"})
    assert Leases(queue.prefix).dequeue().id == keep.id
    assert Leases(queue.prefix).dequeue() is None


def test_cancelling_a_scheduled_job_takes_it_off_the_scheduled_set(queue, redis_client):
    job = queue.enqueue("a.job", delay=3600)

    assert queue.cancel_job(job.id) == "cancelled"
    assert_census(queue, redis_client, {job.id: "cancelled"})


def test_cancelling_a_retrying_job_stops_its_retries(queue, redis_client):
    queue.enqueue("a.job")
    job = Leases(queue.prefix).dequeue()
    Leases(queue.prefix).fail_job(job, "boom")

    assert queue.cancel_job(job.id) == "cancelled"
    assert_census(queue, redis_client, {job.id: "cancelled"})


def test_cancelling_a_running_job_asks_its_worker_to_stop_it(queue, redis_client):
    queue.enqueue("a.job")
    job = Leases(queue.prefix).dequeue(lease=30)

    assert queue.cancel_job(job.id) == "requested"
    assert queue.get_job(job.id).cancel_requested is True
    assert queue.get_job(job.id).status is JobStatus.RUNNING
    assert Leases(queue.prefix).extend_lease([job]).cancel_requested == [job.id]

    assert queue.cancel_job(job.id, lease_token=job.lease_token) == "cancelled"
    stored = queue.get_job(job.id)
    assert stored.status is JobStatus.CANCELLED
    assert stored.cancel_requested is False
    assert_census(queue, redis_client, {job.id: "cancelled"})


def test_a_running_job_whose_worker_is_lost_after_cancel_was_requested_is_cancelled(
    queue, redis_client
):
    import time

    queue.enqueue("a.job")
    job = Leases(queue.prefix).dequeue(lease=0.05)
    queue.cancel_job(job.id)
    time.sleep(0.1)

    Leases(queue.prefix).recover_expired()

    assert queue.get_job(job.id).status is JobStatus.CANCELLED
    assert_census(queue, redis_client, {job.id: "cancelled"})


def test_a_job_given_back_is_pending_again_at_the_head_of_its_list(queue, redis_client):
    queue.enqueue("a.job")
    later = queue.enqueue("a.job")
    job = Leases(queue.prefix).dequeue(lease=30)

    assert Leases(queue.prefix).release_job(job) == "released"

    assert queue.get_job(job.id).status is JobStatus.PENDING
    assert Leases(queue.prefix).dequeue().id == job.id, "back at the head, before the others"
    assert Leases(queue.prefix).dequeue().id == later.id


def test_a_job_given_back_after_its_cancellation_was_requested_is_cancelled_not_run_again(
    queue, redis_client
):
    # A worker gives back the unstarted jobs of a batch (or a running job as it stops): a
    # cancellation requested meanwhile must not be lost with the job back on its list.
    queue.enqueue("a.job")
    job = Leases(queue.prefix).dequeue(lease=30)
    assert queue.cancel_job(job.id) == "requested"
    watched_until = queue.keys.done(job.id)
    redis_client.hset(queue.keys.job(job.id), "watched", "1")  # someone waits for its result

    assert Leases(queue.prefix).release_job(job) == "cancelled"

    stored = queue.get_job(job.id)
    assert stored.status is JobStatus.CANCELLED
    assert stored.cancel_requested is False
    assert redis_client.lrange(watched_until, 0, -1) == ["1"], "its waiter hears of it"
    assert Leases(queue.prefix).dequeue() is None
    assert_census(queue, redis_client, {job.id: "cancelled"})


@job(unique=True)
def report(number: int) -> int:
    return number


def test_a_cancelled_unique_job_given_back_frees_its_unique_key(queue, redis_client):
    first = report.delay(1)
    leased = Leases(queue.prefix).dequeue(lease=30)
    queue.cancel_job(first.id)
    assert report.delay(1).id == first.id, "held while it runs"

    assert Leases(queue.prefix).release_job(leased) == "cancelled"

    again = report.delay(1)
    assert again.id != first.id, "the key was given back with the cancellation"
    assert_census(queue, redis_client, {first.id: "cancelled", again.id: "queue:default:normal"})


def test_a_stale_worker_cannot_give_back_a_job_it_no_longer_holds(queue, redis_client):
    queue.enqueue("a.job")
    job = Leases(queue.prefix).dequeue(lease=30)
    queue.cancel_job(job.id, lease_token=job.lease_token or "")

    assert Leases(queue.prefix).release_job(job) == "lost"
    assert_census(queue, redis_client, {job.id: "cancelled"})


def test_finished_and_unknown_jobs_are_not_cancelled(queue, redis_client):
    queue.enqueue("a.job")
    job = Leases(queue.prefix).dequeue()
    Leases(queue.prefix).complete_job(job, 1)

    assert queue.cancel_job(job.id) == "completed"
    assert queue.cancel_job("f" * 32) == "missing"
    assert_census(queue, redis_client, {job.id: "completed"})


def bury(queue, *names):
    jobs = [queue.enqueue(name, max_retries=0) for name in names]
    for _ in jobs:
        Leases(queue.prefix).fail_job(Leases(queue.prefix).dequeue(), "boom")
    return jobs


def test_requeueing_one_dead_job_gives_it_a_fresh_retry_budget(queue, redis_client):
    first, second = bury(queue, "a.one", "a.two")

    assert queue.requeue_dead([first.id]) == [first.id]

    stored = queue.get_job(first.id)
    assert stored.status is JobStatus.PENDING
    assert stored.retry_count == 0
    assert stored.error is None
    assert len(stored.errors) == 1, "the history of failed attempts is kept"
    assert redis_client.ttl(queue.keys.job(first.id)) == -1
    assert_census(queue, redis_client, {first.id: "queue:default:normal", second.id: "dead"})


def test_requeueing_all_dead_jobs(queue, redis_client):
    jobs = bury(queue, "a.one", "a.two", "a.three")
    pending = queue.enqueue("a.pending")

    assert sorted(queue.requeue_dead()) == sorted(j.id for j in jobs)

    expected = {j.id: "queue:default:normal" for j in jobs}
    expected[pending.id] = "queue:default:normal"
    assert_census(queue, redis_client, expected)
    assert [j.id for j in iter(Leases(queue.prefix).dequeue, None)] == [pending.id] + [
        j.id for j in jobs
    ]


def test_requeue_ignores_jobs_that_are_not_dead(queue, redis_client):
    job = queue.enqueue("a.job")

    assert queue.requeue_dead([job.id]) == []
    assert queue.requeue_dead([]) == []
    assert_census(queue, redis_client, {job.id: "queue:default:normal"})
