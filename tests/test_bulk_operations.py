"""Operating many jobs at once: requeueing all dead letters (or those of one name) and purging
a state, in bounded batches; and the runs of a periodic task linked both ways."""

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from django_jobs import JobPriority, JobStatus
from django_jobs.scheduling.task import ScheduledTask
from django_jobs.scheduling.ticks import fire_run
from django_jobs.store.calls import TASK_RUNS_KEPT
from django_jobs.worker.leases import Leases
from tests.census import assert_census


def dead(queue, count, name="a.job", queue_name="default"):
    """``count`` jobs that failed for good, through the real claim and fail scripts."""
    queue.enqueue_many(
        [queue.build_job(name, queue=queue_name, max_retries=0) for _ in range(count)]
    )
    leases, ids = Leases(queue.prefix), []
    for _ in range(count):
        job = leases.dequeue()
        leases.fail_job(job, "boom")
        ids.append(job.id)
    return ids


def completed(queue, count, queue_name="default", user_id=None):
    leases, ids = Leases(queue.prefix), []
    for i in range(count):
        queue.enqueue("a.job", [i], queue=queue_name, user_id=user_id)
        job = leases.dequeue()
        leases.complete_job(job, i)
        ids.append(job.id)
    return ids


# -- requeue_dead --------------------------------------------------------------------------------


def test_ten_thousand_dead_letters_are_requeued_in_batches_within_seconds(queue, redis_client):
    ids = dead(queue, 10_000)

    started = time.monotonic()
    requeued = queue.requeue_dead(batch=1000)
    elapsed = time.monotonic() - started

    assert elapsed < 5, f"took {elapsed:.1f} s"
    assert requeued == ids, "oldest first"
    assert_census(queue, redis_client, dict.fromkeys(ids, "queue:default:normal"))
    assert queue.get_job(ids[0]).status is JobStatus.PENDING


def test_requeue_dead_of_one_name_leaves_the_others_and_stops_at_limit(queue, redis_client):
    names = ["a.job", "b.job", "a.job", "b.job", "b.job", "a.job", "a.job"]
    ids = []
    for name in names:
        ids += dead(queue, 1, name=name)
    a_ids = [i for i, n in zip(ids, names, strict=True) if n == "a.job"]

    assert queue.requeue_dead(name="a.job", limit=3, batch=2) == a_ids[:3]
    assert asyncio.run(queue.arequeue_dead(name="a.job", batch=2)) == a_ids[3:]
    assert queue.requeue_dead(name="a.job") == []
    expected = {i: "queue:default:normal" if i in a_ids else "dead" for i in ids}
    assert_census(queue, redis_client, expected)
    assert queue.requeue_dead(job_ids=[ids[1]]) == [ids[1]], "by id, as before"


def test_a_dead_letter_that_cannot_be_requeued_does_not_stop_the_batches(queue, redis_client):
    ids = dead(queue, 5)
    redis_client.hdel(queue.keys.job(ids[1]), "queue")

    assert queue.requeue_dead(batch=2) == [ids[0], *ids[2:]]
    assert redis_client.zrange(queue.keys.dead, 0, -1) == [ids[1]]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [({"batch": 0}, "batch must be"), ({"limit": -1}, "limit must be"), ({"name": 3}, "name")],
)
def test_bad_requeue_arguments_are_refused(queue, arguments, message):
    with pytest.raises(ValueError, match=message):
        queue.requeue_dead(**arguments)


# -- purge ---------------------------------------------------------------------------------------


def test_purging_pending_jobs_of_one_queue_empties_it_and_nothing_else(queue, redis_client):
    keep = queue.enqueue("a.job")
    keep_later = queue.enqueue("a.job", delay=60)
    emails = [queue.enqueue("a.job", [i], queue="emails", priority=i % 4).id for i in range(7)]
    emails.append(queue.enqueue("a.job", queue="emails", delay=60, user_id=5).id)

    assert queue.purge("pending", queue="emails", batch=3) == 8

    assert_census(
        queue, redis_client, {keep.id: "queue:default:normal", keep_later.id: "scheduled"}
    )
    assert queue.jobs_for_user(5) == []
    assert queue.stats()["queues"]["emails"] == {"critical": 0, "high": 0, "normal": 0, "low": 0}


def test_purging_by_name_takes_the_named_jobs_out_of_the_middle_of_a_list(queue, redis_client):
    names = ["a.job", "b.job", "b.job", "a.job", "b.job", "a.job"]
    ids = [queue.enqueue(name, [i]).id for i, name in enumerate(names)]

    assert asyncio.run(queue.apurge(JobStatus.PENDING, name="b.job", batch=2)) == 3

    kept = [i for i, n in zip(ids, names, strict=True) if n == "a.job"]
    assert redis_client.lrange(queue.keys.queue("default", JobPriority.NORMAL), 0, -1) == kept
    assert_census(queue, redis_client, dict.fromkeys(kept, "queue:default:normal"))


def test_purging_finished_jobs_older_than_keeps_the_recent_ones(queue, redis_client):
    old = completed(queue, 4, user_id=9)
    # Finished an hour ago: their index scores say when (the records say so too).
    for job_id in old:
        redis_client.zadd(queue.keys.completed, {job_id: time.time() - 3600})
    recent = completed(queue, 2)

    assert queue.purge("completed", older_than=timedelta(minutes=30), batch=3) == 4
    assert queue.purge("completed", older_than=600) == 0

    assert_census(queue, redis_client, dict.fromkeys(recent, "completed"))
    for job_id in old:
        assert not redis_client.exists(queue.keys.job(job_id), queue.keys.result(job_id))
    assert redis_client.zcard(queue.keys.user("9")) == 0


def test_purging_each_other_state_with_filters(queue, redis_client):
    failed_default = dead(queue, 2)
    failed_reports = dead(queue, 2, queue_name="reports")
    queue.enqueue("a.job")
    retrying = Leases(queue.prefix).dequeue()
    Leases(queue.prefix).fail_job(retrying, "boom")
    cancelled = queue.enqueue("a.job", delay=60)
    queue.cancel_job(cancelled.id)

    assert queue.purge("failed", queue="reports") == 2
    assert queue.purge("retrying") == 1
    assert queue.purge("cancelled", name="other.job") == 0
    assert queue.purge("cancelled") == 1

    assert_census(queue, redis_client, dict.fromkeys(failed_default, "dead"))
    assert all(queue.get_job(i) is None for i in failed_reports)


def test_running_jobs_are_not_purged(queue, redis_client):
    queue.enqueue("a.job")
    running = Leases(queue.prefix).dequeue()

    with pytest.raises(ValueError, match="cancel running jobs first"):
        queue.purge("running")
    with pytest.raises(ValueError, match="older_than applies to finished jobs"):
        queue.purge("pending", older_than=60)
    with pytest.raises(ValueError, match="older_than must be 0 seconds or more, not -1"):
        queue.purge("completed", older_than=-1)
    with pytest.raises(ValueError, match="older_than must be a number of seconds"):
        queue.purge("completed", older_than="7d")
    assert_census(queue, redis_client, {running.id: "processing"})


# -- runs of a periodic task ------------------------------------------------------------------


def test_a_tasks_runs_link_to_it_and_it_lists_them_newest_first(queue, redis_client):
    task = ScheduledTask("nightly", "tests.record", "interval", 60, args=["x"])
    start = datetime(2024, 1, 15, tzinfo=UTC)
    fired = [fire_run(queue, task, start + timedelta(minutes=i)) for i in range(TASK_RUNS_KEPT + 3)]
    other = fire_run(
        queue, ScheduledTask("other", "tests.record", "interval", 60, args=["y"]), start
    )

    runs = queue.task_runs("nightly", limit=5)

    assert [j.id for j in runs] == [f.job_id for f in fired[::-1][:5]]
    assert {j.meta["scheduled_task"] for j in runs} == {"nightly"}
    assert queue.get_job(other.job_id).meta == {"scheduled_task": "other"}
    key = queue.keys.task_runs("nightly")
    assert redis_client.zcard(key) == TASK_RUNS_KEPT, "the newest 50 are kept"
    assert 0 < redis_client.ttl(key) <= 7 * 24 * 3600

    queue.delete_job(fired[-1].job_id)
    runs = asyncio.run(queue.atask_runs("nightly", limit=2))
    assert [j.id for j in runs] == [fired[-2].job_id], "a deleted run is left out"
    assert queue.task_runs("never") == []
