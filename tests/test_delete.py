"""Deleting jobs for good: ``JobQueue.delete_job()``, ``delete_jobs()`` and their async twins."""

import asyncio

import pytest

from django_jobs import JobQueue, JobStatus
from django_jobs.exceptions import JobIsRunning
from django_jobs.worker.leases import Leases
from tests.census import assert_census


def jobs_in_every_state(queue):
    """One job in each state a job can be deleted in, by state."""
    leases = Leases(queue.prefix)
    jobs = {
        "pending": queue.enqueue("a.job", queue="emails", priority="high", user_id=7),
        "delayed": queue.enqueue("a.job", delay=3600, user_id="ann"),
    }
    queue.enqueue("a.job", max_retries=1)
    jobs["retrying"] = leases.dequeue(queues=["default"])
    leases.fail_job(jobs["retrying"], "boom")
    queue.enqueue("a.job", max_retries=0)
    jobs["failed"] = leases.dequeue(queues=["default"])
    leases.fail_job(jobs["failed"], "boom")
    queue.enqueue("a.job")
    jobs["completed"] = leases.dequeue(queues=["default"])
    leases.complete_job(jobs["completed"], {"answer": 42})
    jobs["cancelled"] = queue.enqueue("a.job")
    queue.cancel_job(jobs["cancelled"].id)
    return jobs


def test_deleting_jobs_in_every_state_leaves_their_ids_nowhere(queue, redis_client):
    jobs = jobs_in_every_state(queue)
    keep = queue.enqueue("a.job", queue="emails", priority="high", user_id=7)
    for job in jobs.values():
        queue.watch(job.id)  # a waiter's notification list, for finished jobs filled already

    deleted = queue.delete_jobs([job.id for job in jobs.values()])

    statuses = {job.id: job.status for job in deleted}
    assert statuses == {
        jobs["pending"].id: JobStatus.PENDING,
        jobs["delayed"].id: JobStatus.PENDING,
        jobs["retrying"].id: JobStatus.RETRYING,
        jobs["failed"].id: JobStatus.FAILED,
        jobs["completed"].id: JobStatus.COMPLETED,
        jobs["cancelled"].id: JobStatus.CANCELLED,
    }
    assert next(j for j in deleted if j.id == jobs["completed"].id).result == {"answer": 42}
    assert_census(queue, redis_client, {keep.id: "queue:emails:high"})
    for job in jobs.values():
        assert queue.get_job(job.id) is None
        for key in (queue.keys.result(job.id), queue.keys.done(job.id)):
            assert not redis_client.exists(key), key
    assert [j.id for j in queue.jobs_for_user(7)] == [keep.id]
    assert queue.jobs_for_user("ann") == []
    assert Leases(queue.prefix).dequeue().id == keep.id


def test_a_running_job_is_refused_and_nothing_of_the_call_is_deleted(queue, redis_client):
    queue.enqueue("a.job")
    running = Leases(queue.prefix).dequeue(lease=30)
    pending = queue.enqueue("a.job")

    with pytest.raises(JobIsRunning, match=rf"running job {running.id}: cancel it first"):
        queue.delete_jobs([pending.id, running.id])
    with pytest.raises(JobIsRunning, match="Nothing was deleted"):
        queue.delete_job(running.id)

    assert_census(
        queue, redis_client, {running.id: "processing", pending.id: "queue:default:normal"}
    )
    assert queue.get_job(running.id).status is JobStatus.RUNNING


def test_a_running_job_is_deleted_once_its_cancellation_is_confirmed(queue, redis_client):
    queue.enqueue("a.job")
    job = Leases(queue.prefix).dequeue(lease=30)
    assert queue.cancel_job(job.id) == "requested"
    assert queue.cancel_job(job.id, lease_token=job.lease_token) == "cancelled"

    assert queue.delete_job(job.id).status is JobStatus.CANCELLED

    assert_census(queue, redis_client, {})


def test_deleting_an_unknown_id_returns_nothing_and_drops_stale_index_entries(queue, redis_client):
    assert queue.delete_job("f" * 32) is None
    # An index entry whose record expired before it was trimmed.
    redis_client.zadd(queue.keys.completed, {"gone": 1})

    assert queue.delete_jobs(["gone", "gone", "f" * 32]) == []

    assert redis_client.zscore(queue.keys.completed, "gone") is None


def test_a_job_key_of_the_wrong_type_is_deleted_too(queue, redis_client):
    redis_client.rpush(queue.keys.job("odd"), "not a hash")
    redis_client.zadd(queue.keys.dead, {"odd": 1})

    (deleted,) = queue.delete_jobs(["odd"])

    assert deleted.status is JobStatus.FAILED
    assert "not a hash" in deleted.error
    assert_census(queue, redis_client, {})


def test_ids_are_checked_before_anything_is_sent(queue):
    with pytest.raises(TypeError, match=r"pass \['abc'\]"):
        queue.delete_jobs("abc")
    with pytest.raises(TypeError, match="delete_job"):
        queue.delete_job(42)
    assert queue.delete_jobs([]) == []


def test_the_async_twins_delete_too(queue, redis_client):
    first, second = queue.enqueue("a.job"), queue.enqueue("a.job")

    async def delete():
        one = await JobQueue(queue.prefix).adelete_job(first.id)
        rest = await JobQueue(queue.prefix).adelete_jobs([second.id])
        return one, rest

    one, rest = asyncio.run(delete())

    assert one.id == first.id
    assert [j.id for j in rest] == [second.id]
    assert_census(queue, redis_client, {})
