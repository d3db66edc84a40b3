"""The ``a``-prefixed twins run the same plans on the asyncio client."""

import asyncio

from django_jobs import JobStatus
from django_jobs.worker.leases import Leases
from tests.census import assert_census


def test_async_twins_take_a_job_through_its_whole_life(queue, redis_client):
    async def life():
        job = await queue.aenqueue("a.job", [1], priority="high", user_id=3)
        taken = await Leases(queue.prefix).adequeue(worker_id="async-worker")
        assert taken.id == job.id
        assert (await Leases(queue.prefix).aextend_lease([taken])).lost == []
        assert await Leases(queue.prefix).acomplete_job(taken, {"ok": True})
        return job, await queue.aget_job(job.id), await queue.astats()

    job, stored, stats = asyncio.run(life())

    assert stored.status is JobStatus.COMPLETED
    assert stored.result == {"ok": True}
    assert stats["states"]["completed"] == 1
    assert_census(queue, redis_client, {job.id: "completed"})


def test_async_twins_work_from_more_than_one_event_loop(queue):
    for _ in range(2):
        job = asyncio.run(queue.aenqueue("a.job"))
        assert asyncio.run(queue.acancel_job(job.id)) == "cancelled"


def test_async_twins_keep_the_names_and_docs_of_their_plans(queue):
    assert queue.aenqueue.__name__ == "aenqueue"
    assert queue.enqueue.__name__ == "enqueue"
    assert queue.aenqueue.__doc__ == queue.enqueue.__doc__
