"""Records no worker can run go to the dead-letter queue with a reason; the next job is taken."""

from django_jobs import JobPriority, JobStatus
from django_jobs.worker.leases import Leases
from tests.census import assert_census


def test_list_entry_without_a_record_is_buried_and_the_next_job_taken(queue, redis_client):
    redis_client.rpush(queue.keys.queue("default", JobPriority.NORMAL), "ghost")
    real = queue.enqueue("a.job")

    assert Leases(queue.prefix).dequeue().id == real.id

    ghost = queue.get_job("ghost")
    assert ghost.status is JobStatus.FAILED
    assert ghost.error == "The job record is missing."
    assert_census(queue, redis_client, {"ghost": "dead", real.id: "processing"})


def test_corrupt_record_is_buried_with_the_reason_and_the_next_job_taken(queue, redis_client):
    broken = queue.enqueue("a.job", [1])
    redis_client.hset(queue.keys.job(broken.id), "args", "{not json")
    real = queue.enqueue("a.job", [2])

    assert Leases(queue.prefix).dequeue().id == real.id

    raw = redis_client.hgetall(queue.keys.job(broken.id))
    assert raw["status"] == "failed"
    assert "field 'args' is not JSON" in raw["error"]
    assert_census(queue, redis_client, {broken.id: "dead", real.id: "processing"})


def test_record_with_an_unknown_status_value_is_buried(queue, redis_client):
    broken = queue.enqueue("a.job")
    redis_client.hset(queue.keys.job(broken.id), "priority", "urgent")

    assert Leases(queue.prefix).dequeue() is None
    assert "field 'priority'" in redis_client.hget(queue.keys.job(broken.id), "error")
    assert_census(queue, redis_client, {broken.id: "dead"})


def test_scheduled_entry_without_a_record_is_buried_when_due(queue, redis_client):
    redis_client.zadd(queue.keys.scheduled, {"ghost": 0})

    assert Leases(queue.prefix).dequeue() is None
    assert_census(queue, redis_client, {"ghost": "dead"})


def test_a_corrupt_record_can_still_be_listed_and_inspected(queue, redis_client):
    broken = queue.enqueue("a.job", [1])
    redis_client.hset(queue.keys.job(broken.id), "args", "{not json")
    Leases(queue.prefix).dequeue()

    (listed,) = queue.list_jobs("failed")

    assert listed.id == broken.id
    assert listed.name == "a.job"
    assert listed.args == []
    assert "field 'args' is not JSON" in listed.error
    assert queue.get_job(broken.id).status is JobStatus.FAILED
