"""Where a completed job's result is kept: a short one in the job's record, a longer one in a key
of its own; every reader sees the same result either way, for RESULT_TTL."""

import asyncio
import time

import pytest
import redis

from django_jobs import JobStatus
from django_jobs.exceptions import JobNotFound
from django_jobs.handle import JobHandle
from django_jobs.worker.leases import Leases
from tests.census import assert_census
from tests.redis_server import command_calls

SHORT = {"sent": 3}  # 11 bytes of JSON
LONG = {"message": "x" * 60}  # 76 bytes of JSON: longer than a lease token (32)


def complete(queue, result, worker_id="w1"):
    job = queue.enqueue("a.job")
    leases = Leases(queue.prefix)
    running = leases.dequeue(worker_id=worker_id)
    assert leases.complete_job(running, result) is True
    return job


def test_a_short_result_is_kept_in_the_compact_record_and_read_by_every_reader(queue, redis_client):
    job = complete(queue, SHORT)

    assert redis_client.hget(queue.keys.job(job.id), "result") == '{"sent":3}'
    assert not redis_client.exists(queue.keys.result(job.id))
    assert redis_client.object("encoding", queue.keys.job(job.id)) == "listpack"
    assert "done_token" not in redis_client.hgetall(queue.keys.job(job.id))
    assert queue.get_job(job.id).result == SHORT
    assert JobHandle.from_id(job.id, queue).result(timeout=1) == SHORT
    (listed,) = queue.page(JobStatus.COMPLETED).jobs
    assert listed.id == job.id
    assert listed.result == SHORT
    (deleted,) = queue.delete_jobs([job.id])
    assert deleted.result == SHORT
    assert not redis_client.exists(queue.keys.job(job.id))


def test_a_long_result_is_kept_in_its_own_key_for_result_ttl(queue, redis_client):
    job = complete(queue, LONG)

    assert not redis_client.hexists(queue.keys.job(job.id), "result")
    assert 0 < redis_client.ttl(queue.keys.result(job.id)) <= 24 * 3600
    assert queue.get_job(job.id).result == LONG
    assert JobHandle.from_id(job.id, queue).result(timeout=1) == LONG
    assert queue.page(JobStatus.COMPLETED).jobs[0].result == LONG
    (deleted,) = queue.delete_jobs([job.id])
    assert deleted.result == LONG
    assert not redis_client.exists(queue.keys.job(job.id), queue.keys.result(job.id))


def test_a_short_result_expires_after_result_ttl_and_recovery_takes_its_bytes_back(
    jobs_settings, queue, redis_client
):
    jobs_settings.DJANGO_JOBS = {**jobs_settings.DJANGO_JOBS, "RESULT_TTL": 1}
    old = complete(queue, SHORT)
    Leases(queue.prefix).recover_expired()  # the first sweep starts from RESULT_TTL ago
    time.sleep(1.2)
    fresh = complete(queue, "fresh")

    assert queue.get_job(old.id).result is None, "older than RESULT_TTL: no longer returned"
    assert queue.get_job(old.id).status is JobStatus.COMPLETED, "the record stays JOB_TTL"
    assert queue.get_job(fresh.id).result == "fresh"
    assert redis_client.hexists(queue.keys.job(old.id), "result")

    Leases(queue.prefix).recover_expired()

    assert not redis_client.hexists(queue.keys.job(old.id), "result")
    assert redis_client.hget(queue.keys.job(fresh.id), "result") == '"fresh"'
    assert queue.get_job(fresh.id).result == "fresh"
    assert_census(queue, redis_client, {old.id: "completed", fresh.id: "completed"})


def test_a_record_of_an_earlier_version_is_read_as_before(queue, redis_client):
    """Its result in a key, its lease token kept as ``done_token``, its timeout "300.0"."""
    job = queue.enqueue("a.job")
    running = Leases(queue.prefix).dequeue(worker_id="w1")
    redis_client.hset(
        queue.keys.job(job.id),
        mapping={"status": "completed", "done_token": running.lease_token, "timeout": "300.0"},
    )
    redis_client.hdel(queue.keys.job(job.id), "lease_token")
    redis_client.set(queue.keys.result(job.id), '{"sent":3}', ex=60)

    stored = queue.get_job(job.id)

    assert stored.result == SHORT
    assert stored.timeout == 300


def test_a_timeout_is_written_as_a_whole_number_when_it_is_one(queue, redis_client):
    whole = queue.enqueue("a.job", timeout=600.0)
    part = queue.enqueue("a.job", timeout=2.5)
    default = queue.enqueue("a.job", timeout=300.0)

    assert redis_client.hget(queue.keys.job(whole.id), "timeout") == "600"
    assert redis_client.hget(queue.keys.job(part.id), "timeout") == "2.5"
    # The default (Job.timeout) is left out of the record, and read back as itself.
    assert not redis_client.hexists(queue.keys.job(default.id), "timeout")
    assert queue.get_job(whole.id).timeout == 600
    assert queue.get_job(part.id).timeout == 2.5
    assert queue.get_job(default.id).timeout == 300


def test_a_result_as_long_as_the_lease_token_keeps_the_record_compact_on_any_server(
    private_redis, queue
):
    client = private_redis.client()
    # Just long enough for a running job's record (its lease token is 32 characters).
    client.config_set("hash-max-listpack-value", 32)
    inline, in_key = "y" * 30, "z" * 31  # 32 and 33 bytes of JSON

    short, longer = complete(queue, inline), complete(queue, in_key)

    assert client.object("encoding", queue.keys.job(short.id)) == "listpack"
    assert client.hget(queue.keys.job(short.id), "result") == f'"{inline}"'
    assert client.object("encoding", queue.keys.job(longer.id)) == "listpack"
    assert not client.hexists(queue.keys.job(longer.id), "result")
    assert client.ttl(queue.keys.result(longer.id)) > 0
    assert [queue.get_job(job.id).result for job in (short, longer)] == [inline, in_key]


def test_the_result_of_a_job_finished_already_is_read_with_its_status(private_redis, queue):
    handle = JobHandle(complete(queue, SHORT), queue)  # as delay() returned it
    client = redis.Redis.from_url(private_redis.url, decode_responses=True)
    before = command_calls(client, "fcall", "evalsha")

    assert handle.result(timeout=1) == SHORT
    # The watch (which marks nothing: the job has ended) and the read of the job.
    assert command_calls(client, "fcall", "evalsha") - before == 2
    assert queue.watch(handle.id) == JobStatus.COMPLETED
    assert "watched" not in client.hgetall(queue.keys.job(handle.id))


def test_a_wait_for_an_unknown_job_raises_at_once_and_leaves_nothing_behind(private_redis, queue):
    client = private_redis.client()
    unknown = "0" * 32

    started = time.monotonic()
    with pytest.raises(JobNotFound):
        queue.wait_for(unknown, timeout=30)
    with pytest.raises(JobNotFound):
        asyncio.run(queue.await_for(unknown, timeout=30))

    assert time.monotonic() - started < 2  # neither wait ran its time (5 s)
    assert not client.exists(queue.keys.job(unknown))
    # The token that ended the wait at once goes within a second.
    assert client.pttl(queue.keys.done(unknown)) <= 1000
    time.sleep(1.1)
    assert not client.exists(queue.keys.done(unknown))


def test_a_wait_with_no_time_left_looks_once_and_says_where_the_job_is(private_redis, queue):
    handle = JobHandle(queue.enqueue("a.job"), queue)
    client = redis.Redis.from_url(private_redis.url, decode_responses=True)
    scripts = command_calls(client, "fcall", "evalsha")

    started = time.monotonic()
    with pytest.raises(TimeoutError, match=f"Job {handle.id} is still pending after 0 s"):
        handle.result(timeout=0)

    assert time.monotonic() - started < 0.5
    assert command_calls(client, "fcall", "evalsha") - scripts == 1  # the look, and no wait
    assert command_calls(client, "blmove") == 0
