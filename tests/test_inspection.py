"""Looking at jobs: by state with paging, by user, and counts."""

import pytest

from django_jobs import JobStatus
from django_jobs.worker.leases import Leases


def test_pending_jobs_are_listed_in_the_order_workers_take_them(queue):
    low = queue.enqueue("a.job", priority="low")
    delayed = queue.enqueue("a.job", delay=60)
    high = queue.enqueue("a.job", priority="high")
    normal = queue.enqueue("a.job", queue="emails")

    listed = queue.list_jobs(JobStatus.PENDING)

    assert [j.id for j in listed] == [high.id, normal.id, low.id, delayed.id]


def test_listing_pages_with_offset_and_limit(queue):
    ids = [queue.enqueue("a.job", [i]).id for i in range(7)]
    ids += [queue.enqueue("a.job", [i], delay=60 + i).id for i in range(3)]

    pages = [[j.id for j in queue.list_jobs("pending", offset=o, limit=3)] for o in range(0, 12, 3)]

    assert pages == [ids[0:3], ids[3:6], ids[6:9], ids[9:10]]


def test_listing_can_be_limited_to_one_queue(queue):
    queue.enqueue("a.job")
    email = queue.enqueue("a.job", queue="emails")
    queue.enqueue("a.job", delay=60)
    later_email = queue.enqueue("a.job", queue="emails", delay=60)

    listed = queue.list_jobs("pending", queue="emails")

    assert [j.id for j in listed] == [email.id, later_email.id]
    assert [j.id for j in queue.list_jobs("pending", queue="emails", offset=1)] == [later_email.id]


def test_finished_jobs_are_listed_newest_first(queue):
    for i in range(3):
        queue.enqueue("a.job", [i], max_retries=0)
    jobs = [Leases(queue.prefix).dequeue() for _ in range(3)]
    for job in jobs:
        Leases(queue.prefix).fail_job(job, "boom")

    assert [j.id for j in queue.list_jobs("failed")] == [j.id for j in reversed(jobs)]
    assert queue.list_jobs("completed") == []


def test_running_and_retrying_jobs_are_listed(queue):
    queue.enqueue("a.job")
    queue.enqueue("a.job")
    running = Leases(queue.prefix).dequeue()
    retrying = Leases(queue.prefix).dequeue()
    Leases(queue.prefix).fail_job(retrying, "boom")

    assert [j.id for j in queue.list_jobs("running")] == [running.id]
    assert [j.id for j in queue.list_jobs("retrying")] == [retrying.id]


def test_unknown_state_is_refused(queue):
    with pytest.raises(ValueError, match="'sleeping' is not a valid JobStatus"):
        queue.list_jobs("sleeping")


def test_jobs_are_listed_by_user_newest_first(queue):
    mine = [queue.enqueue("a.job", [i], user_id=7).id for i in range(3)]
    queue.enqueue("a.job", user_id=8)
    queue.enqueue("a.job")

    assert [j.id for j in queue.jobs_for_user(7)] == mine[::-1]
    assert [j.id for j in queue.jobs_for_user("7", offset=1, limit=1)] == [mine[1]]
    assert queue.jobs_for_user(9) == []


def test_stats_count_ready_jobs_per_queue_and_priority_and_all_per_state(queue):
    queue.enqueue("a.job", priority="critical")
    queue.enqueue("a.job", priority="critical")
    queue.enqueue("a.job", queue="emails", priority="low")
    queue.enqueue("a.job", delay=60)
    queue.enqueue("a.job", max_retries=0)
    done = Leases(queue.prefix).dequeue()
    Leases(queue.prefix).complete_job(done, None)

    stats = queue.stats()

    assert stats["queues"]["default"] == {"critical": 1, "high": 0, "normal": 1, "low": 0}
    assert stats["queues"]["emails"]["low"] == 1
    assert stats["states"] == {
        "pending": 4,
        "scheduled": 1,
        "limited": 0,
        "retrying": 0,
        "running": 0,
        "failed": 0,
        "completed": 1,
        "cancelled": 0,
        "waiting": 0,
    }


def test_get_jobs_reads_many_jobs_in_one_round_trip_and_leaves_out_unknown_ids(queue, monkeypatch):
    from django_jobs.store import execute

    first = queue.enqueue("tests.testapp.jobs.add", [1, 2])
    second = queue.enqueue("tests.testapp.jobs.add", [3, 4])
    sent = []
    real = execute.execute
    monkeypatch.setattr(execute, "execute", lambda c, step: sent.append(step) or real(c, step))

    found = queue.get_jobs([second.id, "no-such-job", first.id, second.id])

    assert list(found) == [second.id, first.id]
    assert found[first.id].args == [1, 2]
    assert len(sent) == 1
    assert queue.get_jobs([]) == {}
    with pytest.raises(TypeError, match="not the single id"):
        queue.get_jobs(first.id)
