"""The console's read side: counts in one round trip with the age of each list's head, and pages
of jobs by state or user, by rank, or filtered with a bounded walk that goes on across calls."""

import asyncio
import time
from datetime import timedelta

import pytest

from django_jobs import JobPriority, JobStatus, browse
from django_jobs.browse import Page
from django_jobs.job import Job, new_id
from django_jobs.serialization import utcnow
from django_jobs.store import worker_calls
from django_jobs.store.connection import get_redis
from django_jobs.store.execute import execute, run
from django_jobs.worker.leases import Leases


def steps_of(plan):
    """Run a plan with the sync client; its value and how many round trips it made."""
    client, count = get_redis(), 0
    step = next(plan)
    while True:
        count += 1
        try:
            step = plan.send(execute(client, step))
        except StopIteration as done:
            return done.value, count


def finish(queue, count, how="complete", name="a.job", queue_name="default"):
    """Enqueue ``count`` jobs and take each through a worker to ``how``; their ids in order."""
    leases = Leases(queue.prefix)
    ids = []
    for i in range(count):
        queue.enqueue(name, [i], queue=queue_name, max_retries=0)
        job = leases.dequeue()
        if how == "complete":
            leases.complete_job(job, i)
        else:
            leases.fail_job(job, "boom")
        ids.append(job.id)
    return ids


def waiting_since(jobs, seconds_ago, delayed_by=None, **options):
    """Store a ready job enqueued ``seconds_ago``, due ``delayed_by`` seconds ago if given."""
    now = utcnow()
    job = Job(
        id=new_id(),
        name="a.job",
        created_at=now - timedelta(seconds=seconds_ago),
        scheduled_at=None if delayed_by is None else now - timedelta(seconds=delayed_by),
        **options,
    )
    jobs.enqueue_many([job])
    return job


# -- stats -------------------------------------------------------------------------------------


def test_stats_is_one_round_trip_with_every_count_the_workers_and_the_oldest_ages(queue):
    waiting_since(queue, 100)
    waiting_since(queue, 5)
    waiting_since(queue, 200, delayed_by=30, queue="emails", priority=JobPriority.HIGH)
    queue.enqueue("a.job", delay=60)
    fields = worker_calls.worker_record(
        host="h", pid=1, queues=["emails"], concurrency=1, started_at=time.time(), jobs=[],
        version="1", stopping=False,
    )  # fmt: skip
    now = time.time()
    run(worker_calls.worker_beat(queue.keys, worker_id="w1", fields=fields, now=now, ttl=30,
                                 forget_before=0))  # fmt: skip

    stats, round_trips = steps_of(queue._stats())

    assert round_trips == 1
    assert stats["states"]["pending"] == 4
    assert stats["states"]["scheduled"] == 1
    assert stats["queues"]["default"]["normal"] == 2
    assert stats["workers"] == {"live": 1, "dead": 0}
    assert stats["unserved"] == {"default": 2}, "a live worker serves emails"
    oldest = stats["oldest"]
    assert set(oldest) == {"default", "emails", "reports"}
    assert 100 <= oldest["default"]["normal"] < 110, "the head of the list, not its tail"
    assert 30 <= oldest["emails"]["high"] < 40, "ready since it was due, not since enqueued"
    assert oldest["default"]["critical"] is None
    assert oldest["reports"] == {"critical": None, "high": None, "normal": None, "low": None}
    assert asyncio.run(queue.astats())["queues"] == stats["queues"]


# -- paging by rank ----------------------------------------------------------------------------


def test_unfiltered_pages_are_by_position_so_page_n_starts_at_n_times_limit(queue):
    ids = [queue.enqueue("a.job", [i]).id for i in range(7)]
    ids += [queue.enqueue("a.job", [i], delay=60 + i).id for i in range(3)]

    pages = [queue.page("pending", cursor=n * 4, limit=4) for n in range(3)]

    assert [[j.id for j in p.jobs] for p in pages] == [ids[0:4], ids[4:8], ids[8:10]]
    assert [p.cursor for p in pages] == [4, 8, None]
    assert {p.total for p in pages} == {10}
    assert [p.scanned for p in pages] == [4, 4, 2]
    assert queue.page("pending", cursor=10, limit=4) == Page([], None, 10, 0)


def test_pending_pages_follow_the_order_workers_take_jobs_in(queue):
    low = queue.enqueue("a.job", priority="low")
    delayed = queue.enqueue("a.job", delay=60)
    critical = queue.enqueue("a.job", priority="critical", queue="reports")
    normal = queue.enqueue("a.job", queue="emails")

    listed = queue.page(JobStatus.PENDING, limit=2)
    rest = queue.page(JobStatus.PENDING, cursor=listed.cursor, limit=2)

    assert [j.id for j in listed.jobs + rest.jobs] == [critical.id, normal.id, low.id, delayed.id]
    assert rest.cursor is None


def test_finished_states_page_newest_first_and_running_by_lease_deadline(queue):
    done = finish(queue, 5)
    dead = finish(queue, 3, how="fail")
    queue.enqueue("a.job")
    queue.enqueue("a.job")
    leases = Leases(queue.prefix)
    first, second = leases.dequeue(lease=60), leases.dequeue(lease=30)

    completed = queue.page("completed", limit=3)
    assert [j.id for j in completed.jobs] == done[::-1][:3]
    assert (completed.cursor, completed.total) == (3, 5)
    assert [j.id for j in queue.page("completed", cursor=3, limit=3).jobs] == done[::-1][3:]
    assert [j.id for j in queue.page("failed").jobs] == dead[::-1]
    assert [j.id for j in queue.page("running").jobs] == [second.id, first.id]
    assert asyncio.run(queue.apage("failed", limit=1)).jobs[0].id == dead[-1]


# -- filtered paging -----------------------------------------------------------------------------


def test_a_name_filter_walks_a_bounded_number_of_entries_per_call_and_goes_on(queue, monkeypatch):
    monkeypatch.setattr(browse, "SCAN_LIMIT", 4)
    names = ["a.job", "b.job", "a.job", "c.job", "c.job", "c.job", "c.job", "a.job", "b.job"]
    ids = [queue.enqueue(name, [i]).id for i, name in enumerate(names)]

    found, cursor, calls = [], 0, []
    while cursor is not None:
        page = queue.page("pending", name="a.job", cursor=cursor, limit=10)
        found += [j.id for j in page.jobs]
        calls.append((page.scanned, page.cursor))
        cursor = page.cursor

    assert found == [ids[0], ids[2], ids[7]]
    assert calls == [(4, 4), (4, 8), (1, None)], "each call looks at 4 entries at most"
    assert {page.total} == {9}


def test_a_filtered_page_stops_at_limit_and_resumes_after_the_last_entry_it_looked_at(queue):
    ids = [queue.enqueue("a.job" if i % 2 else "b.job", [i]).id for i in range(10)]

    first = queue.page("pending", name="a.job", limit=2)
    second = queue.page("pending", name="a.job", cursor=first.cursor, limit=2)

    assert [j.id for j in first.jobs] == [ids[1], ids[3]]
    assert (first.cursor, first.scanned) == (4, 4)
    assert [j.id for j in second.jobs] == [ids[5], ids[7]]
    assert queue.list_jobs("pending", name="b.job", offset=8) == [queue.get_job(ids[8])]


def test_a_queue_filter_reads_that_queues_lists_and_walks_the_shared_sets(queue):
    finish(queue, 2)
    reports = finish(queue, 2, queue_name="reports")
    queue.enqueue("a.job")
    email = queue.enqueue("a.job", queue="emails")
    queue.enqueue("a.job", delay=60)
    later_email = queue.enqueue("a.job", queue="emails", delay=60)

    pending = queue.page("pending", queue="emails")
    completed = queue.page("completed", queue="reports")

    assert [j.id for j in pending.jobs] == [email.id, later_email.id]
    assert pending.total == 3, "the emails lists and the delayed set"
    assert [j.id for j in completed.jobs] == reports[::-1]
    assert (completed.total, completed.scanned, completed.cursor) == (4, 4, None)


def test_a_users_jobs_page_newest_first_of_every_state_or_of_one(queue):
    mine = [queue.enqueue("a.job", [i], user_id=7).id for i in range(4)]
    queue.enqueue("a.job", user_id=8)
    queue.cancel_job(mine[1])

    everything = queue.page(user_id=7, limit=3)
    cancelled = queue.page("cancelled", user_id="7")

    assert [j.id for j in everything.jobs] == mine[::-1][:3]
    assert (everything.cursor, everything.total) == (3, 4)
    assert [j.id for j in cancelled.jobs] == [mine[1]]
    assert (cancelled.total, cancelled.scanned) == (4, 4)
    assert [j.id for j in queue.jobs_for_user(7, offset=3)] == [mine[0]]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "page\\(\\) needs a status"),
        ({"status": "sleeping"}, "'sleeping' is not a valid JobStatus"),
        ({"status": "waiting_for_commit"}, "use pending, running, completed"),
        ({"status": "pending", "queue": "nope"}, "Unknown queue 'nope'"),
        ({"status": "pending", "limit": 0}, "limit must be an integer >= 1, not 0"),
        ({"status": "pending", "limit": "5"}, "limit must be an integer"),
        ({"status": "pending", "cursor": -1}, "cursor must be an integer >= 0"),
        ({"status": "pending", "name": ""}, "name must be a job's name"),
    ],
)
def test_bad_paging_arguments_are_refused_naming_the_problem(queue, arguments, message):
    with pytest.raises(ValueError, match=message):
        queue.page(**arguments)
