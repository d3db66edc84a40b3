"""Attempts completed, failed and dead-lettered per minute: counted by the scripts that record
them, read back with ``JobQueue.throughput()``."""

import asyncio
import itertools
from datetime import timedelta

import pytest

from django_jobs import JobPriority, JobQueue
from django_jobs.serialization import from_timestamp, utcnow
from django_jobs.worker.leases import Leases
from tests.processes import wait_until
from tests.testapp import jobs


def totals(queue, minutes=2):
    """The counts of the last ``minutes`` added up (a test may straddle a minute's end)."""
    rows = queue.throughput(minutes)
    return {k: sum(row[k] for row in rows) for k in ("completed", "failed", "dead")}


def test_completions_failures_and_dead_letters_are_counted_in_their_minute(queue):
    leases = Leases(queue.prefix)
    for _ in range(4):
        queue.enqueue("a.job", max_retries=1)
    leases.complete_job(leases.dequeue(), 1)
    acked, claim = leases.complete_and_claim(leases.dequeue(), 2)  # a worker's steady state
    assert acked
    retried = claim.job
    leases.fail_job(retried, "boom")  # retried: a failed attempt
    dead = leases.dequeue()
    leases.fail_job(dead, "boom", retry=False)  # dead-lettered

    assert totals(queue) == {"completed": 2, "failed": 2, "dead": 1}


def test_jobs_buried_by_lease_recovery_or_unreadable_at_claim_are_counted_dead(
    queue, redis_client, configure
):
    configure(MAX_LOST=1)
    leases = Leases(queue.prefix)
    queue.enqueue("a.job")
    leases.dequeue(lease=0.01)  # its worker is lost once: a poison pill with MAX_LOST 1
    redis_client.rpush(queue.keys.queue("default", JobPriority.NORMAL), "no-record")
    asyncio.run(asyncio.sleep(0.05))

    assert len(leases.recover_expired().buried) == 1
    assert leases.dequeue() is None  # buries the id without a record

    assert totals(queue) == {"completed": 0, "failed": 0, "dead": 2}


def test_an_acknowledgement_sent_again_or_stale_is_not_counted_again(queue):
    leases = Leases(queue.prefix)
    queue.enqueue("a.job")
    job = leases.dequeue()
    assert leases.complete_job(job, 1) is True
    assert leases.complete_job(job, 1) is True  # the same ack again: its reply was lost
    queue.enqueue("a.job")
    other = leases.dequeue()
    other.lease_token = "not-the-lease"
    assert leases.complete_job(other, 1) is False
    assert leases.fail_job(other, "boom") is None

    assert totals(queue) == {"completed": 1, "failed": 0, "dead": 0}


def test_the_last_hour_comes_back_oldest_first_one_entry_per_minute(queue, redis_client):
    now = int(utcnow().timestamp()) // 60 * 60
    redis_client.hset(queue.keys.minute(now - 5 * 60), mapping={"completed": 7, "failed": 2})
    redis_client.hset(queue.keys.minute(now - 59 * 60), mapping={"dead": 1})
    redis_client.hset(queue.keys.minute(now - 60 * 60), mapping={"completed": 99})  # too old

    rows = queue.throughput()

    assert len(rows) == 60
    starts = [row["minute"] for row in rows]
    assert all(b - a == timedelta(minutes=1) for a, b in itertools.pairwise(starts))
    # The current minute is the last one (it may have just changed, after ``now``).
    assert starts[-1] in (from_timestamp(now), from_timestamp(now + 60))
    by_minute = {row["minute"]: row for row in rows}
    assert by_minute[from_timestamp(now - 5 * 60)] == {
        "minute": from_timestamp(now - 5 * 60),
        "completed": 7,
        "failed": 2,
        "dead": 0,
    }
    if starts[-1] == from_timestamp(now):
        assert by_minute[from_timestamp(now - 59 * 60)]["dead"] == 1
    assert sum(row["completed"] for row in rows) == 7
    assert [row["completed"] for row in queue.throughput(1)] == [0]


def test_a_minutes_counts_expire_a_little_over_an_hour_after_it(queue, redis_client):
    queue.enqueue("a.job")
    leases = Leases(queue.prefix)
    leases.complete_job(leases.dequeue(), 1)

    (key,) = redis_client.scan_iter(match=f"{queue.prefix}:minute:*")

    assert 3600 < redis_client.ttl(key) <= 3900


@pytest.mark.parametrize("minutes", [0, 61, 1.5, True, "60"])
def test_minutes_out_of_range_are_refused(queue, minutes):
    with pytest.raises(ValueError, match="1 to 60 minutes"):
        queue.throughput(minutes)


def test_the_async_twin_reads_the_same_counts(queue):
    queue.enqueue("a.job")
    leases = Leases(queue.prefix)
    leases.complete_job(leases.dequeue(), 1)

    rows = asyncio.run(JobQueue(queue.prefix).athroughput(2))

    assert sum(row["completed"] for row in rows) == 1


def test_a_worker_counts_what_it_runs(workers, queue):
    for i in range(5):
        jobs.add.delay(i, i)
    jobs.fail.using(max_retries=0).delay("boom")

    proc = workers.start("--concurrency", "2", "--burst")

    assert proc.wait(timeout=60) == 0, workers.logs()
    wait_until(lambda: totals(queue)["dead"] == 1, timeout=10, message="the counts")
    assert totals(queue) == {"completed": 5, "failed": 1, "dead": 1}
