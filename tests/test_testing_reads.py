"""In the testing modes the read side of ``JobQueue`` (pages, lists, counts, workers,
throughput, limits) and its operations on many jobs (requeue of dead letters, purge, delete)
answer from the in-memory store, as Redis answers them.

The scenarios run twice, with Redis (the worker's scripts, through ``drain()`` in "redis"
mode) and in capture mode with ``REDIS_URL`` on a closed port, so that a call that reached
Redis would fail; each says what it saw, ids written as their place, and the two must be the
same (django_jobs/testing/reads.py and upkeep.py mirror page.lua, stats.lua, requeue.lua,
purge.lua and delete.lua).
"""

import asyncio
import re
from datetime import timedelta

import pytest

from django_jobs import GroupHandle, JobIsRunning, JobQueue, JobStatus, chain, group, job, moving
from django_jobs.testing import drain, jobs_mode
from tests import testing_jobs as jobs
from tests.conftest import CLOSED_PORT

pytest_plugins = ["django_jobs.testing.pytest"]


@job(unique=True, max_retries=0)
def import_once(customer_id: int, fail: bool = True) -> int:
    if fail:
        raise ConnectionError("the partner is down")
    return customer_id


@job
def delete_myself() -> str:
    """Tries to delete its own record while it runs."""
    from django_jobs.context import current_job

    try:
        JobQueue().delete_job(current_job().id)
    except JobIsRunning as refused:
        return str(refused).split(":")[0]
    return "deleted"


@pytest.fixture(autouse=True)
def fresh_ledgers():
    jobs.attempts.clear()


def in_both(queue, configure, scenario):
    """``scenario()``'s outcome in Redis, and in capture mode with Redis out of reach."""
    in_redis = scenario()
    jobs.attempts.clear()
    configure(REDIS_URL=CLOSED_PORT, REDIS_CONNECT_TIMEOUT=1)
    with jobs_mode("capture"):
        in_memory = scenario()
    return in_redis, in_memory


class Places:
    """Job ids written as the order they were first met (ids differ between the two runs)."""

    def __init__(self):
        self.seen = {}

    def __call__(self, found):
        if isinstance(found, str):
            return self.seen.setdefault(found, f"#{len(self.seen)}")
        if isinstance(found, dict):
            return {self(k): self(v) for k, v in found.items()}
        if isinstance(found, list):
            return [self(item) for item in found]
        return self(found.id)

    def text(self, text):
        return re.sub("|".join(map(re.escape, self.seen)) or "^$", lambda m: self.seen[m[0]], text)


def browse_scenario():
    """Jobs in every state, then what the pages, lists and counts say of them."""
    place, queue = Places(), JobQueue()
    done = [jobs.add.delay(10), jobs.echo.using(queue="emails").delay("y")]
    dead = [jobs.always_fails.using(max_retries=0).delay(m) for m in ("a", "b")]
    retrying = jobs.flaky.delay("k", 1)
    drain()
    pending = [
        jobs.add.delay(1),
        jobs.add.using(priority="high").delay(2),
        jobs.echo.using(queue="emails").delay("e"),
        jobs.echo.using(queue="reports", user_id=7).delay("r"),
        jobs.add.using(delay=600).delay(3),
        jobs.add.using(delay=300, user_id=7).delay(4),
    ]
    cancelled = jobs.echo.delay("c")
    cancelled.cancel()
    flow = chain(jobs.add.s(5), jobs.add.s(6)).delay()
    place([*done, *dead, retrying, *pending, cancelled, *flow.steps])

    def paged(status=None, **options):
        found = queue.page(status, **options)
        return (place(found.jobs), found.cursor, found.total, found.scanned)

    def walk(status, **options):
        """Every page of a listing, following its cursor."""
        pages, cursor = [], 0
        while cursor is not None:
            pages.append(paged(status, cursor=cursor, **options))
            cursor = pages[-1][1]
        return pages

    stats = queue.stats()
    return {
        "states": {s.value: paged(s) for s in JobStatus if s.value != "waiting_for_commit"},
        "pending by two": walk("pending", limit=2),
        "pending of emails": paged("pending", queue="emails"),
        "pending named add, by two": walk("pending", name=jobs.add.name, limit=2),
        "failed from 1": place(queue.list_jobs("failed", offset=1, limit=1)),
        "completed of emails": place(queue.list_jobs("completed", queue="emails")),
        "past the end": paged("pending", cursor=50),
        "user 7": place(queue.jobs_for_user(7)),
        "user 7 pending": paged(user_id="7", status="pending"),
        "stats": {
            **{k: stats[k] for k in ("queues", "states", "counters", "workers", "unserved")},
            "oldest": {
                q: {p: a is not None for p, a in ps.items()} for q, ps in stats["oldest"].items()
            },
            "limits": stats["limits"],
        },
        "workers": queue.workers(),
        "limits": queue.limits(),
        "throughput": [
            sum(m[k] for m in queue.throughput(60)) for k in ("completed", "failed", "dead")
        ],
        "task runs": queue.task_runs("nightly"),
    }


def test_pages_lists_and_counts_are_the_same_in_memory_and_in_redis(queue, configure):
    in_redis, in_memory = in_both(queue, configure, browse_scenario)

    assert in_memory == in_redis
    states = in_redis["states"]
    assert states["pending"] == (["#6", "#5", "#12", "#7", "#8", "#10", "#9"], None, 7, 7), (
        "high first; then default (the chain's first step last), emails, reports; then the "
        "delayed by due time"
    )
    assert states["failed"][0] == ["#3", "#2"], "the dead letters newest first"
    assert states["waiting"][0] == ["#13"]
    assert in_redis["pending by two"][-1] == (["#9"], None, 7, 1)
    assert in_redis["pending named add, by two"][1] == (["#12", "#10"], 6, 7, 4), "a scan"
    assert in_redis["pending of emails"] == (["#7"], None, 3, 3), "its list, and the delayed"
    assert in_redis["user 7"] == ["#10", "#8"]
    assert in_redis["stats"]["states"] == {
        "pending": 7,
        "scheduled": 2,
        "limited": 0,
        "retrying": 1,
        "running": 0,
        "failed": 2,
        "completed": 2,
        "cancelled": 1,
        "waiting": 1,
    }
    assert in_redis["stats"]["unserved"] == {"default": 3, "emails": 1, "reports": 1}
    assert in_redis["throughput"] == [2, 3, 2]


def requeue_scenario():
    """Dead letters requeued: by id, in bulk by name, a unique one whose key another holds,
    a group member whose callback waited."""
    place, queue = Places(), JobQueue()
    handle = group(jobs.add.s(1), jobs.flaky.using(max_retries=0).s("m", 1)).then(jobs.echo.s())
    flow = handle.delay()
    unique = import_once.delay(7)
    dead = [jobs.always_fails.using(max_retries=0).delay(m) for m in ("a", "b", "c")]
    drain()
    members, callback = flow.steps
    place([*members.members, callback, unique, *dead])
    before = (callback.refresh().status.value, members.refresh().failed is not None)
    holder = import_once.delay(7)
    held = queue.requeue_dead_outcome([unique.id, callback.id])
    holder.cancel()
    requeued = queue.requeue_dead_outcome([unique.id])
    again = import_once.delay(7)
    record = queue.get_job(unique.id)
    bulk = queue.requeue_dead(name=jobs.always_fails.name, limit=2)
    member = queue.requeue_dead(name=jobs.flaky.name)
    pending = place(queue.page("pending").jobs)
    group_after = members.refresh()
    group_after = (group_after.failed and place(group_after.failed), group_after.done)
    drain()
    return {
        "before": before,
        "held": (place(held.requeued), place(held.held)),
        "requeued": (place(requeued.requeued), place(requeued.held)),
        "taken again": (again.created, place(again.id)),
        "record": (record.status.value, record.retry_count, record.error, len(record.errors)),
        "bulk": place(bulk),
        "pending": pending,
        "member": place(member),
        "group": group_after,
        "callback": (callback.refresh().status.value, callback.job.args),
        "left dead": place(queue.list_jobs("failed")),
        "second requeue": place(queue.requeue_dead([unique.id])),
    }


def test_requeue_is_the_same_in_memory_and_in_redis(queue, configure):
    in_redis, in_memory = in_both(queue, configure, requeue_scenario)

    assert in_memory == in_redis
    assert in_redis["before"] == ("waiting", True)
    assert in_redis["held"] == ([], {"#3": "#7"}), "a held key keeps it dead; a waiting step stays"
    assert in_redis["requeued"] == (["#3"], {})
    assert in_redis["taken again"] == (False, "#3"), "the requeued job holds its key again"
    assert in_redis["record"] == ("pending", 0, None, 1), "its history of failed attempts stays"
    assert in_redis["bulk"] == ["#4", "#5"], "oldest first, up to the limit"
    assert in_redis["member"] == ["#1"]
    assert in_redis["pending"] == ["#3", "#4", "#5", "#1"], "at the tail of their list"
    assert in_redis["group"] == (None, 1), "the requeued member no longer holds it back"
    assert in_redis["callback"] == ("completed", [[1, 2]])
    assert in_redis["left dead"] == ["#5", "#4", "#3", "#6"], "the requeued failed again"
    assert in_redis["second requeue"] == ["#3"]


def removal_scenario():
    """Purges and deletes: what they count and return, and what they leave."""
    place, queue = Places(), JobQueue()
    done = [jobs.add.delay(n) for n in range(3)]
    refused = delete_myself.delay()
    drain()
    unique = import_once.delay(1)
    flow = chain(jobs.add.s(1), jobs.add.s(2), jobs.add.s(3)).delay()
    emails = [jobs.echo.using(queue="emails").delay(n) for n in range(2)]
    later = jobs.add.using(delay=60, queue="emails").delay(9)
    place([*done, refused, unique, *flow.steps, *emails, later])
    deleted = queue.delete_jobs([flow.steps[1].id, "no-such-job", unique.id, flow.steps[1].id])
    return {
        "refused": place.text(refused.result()),
        "deleted": [(place(j), j.status.value) for j in deleted],
        "after the deleted step": (
            flow.steps[2].refresh().status.value,
            place.text(flow.steps[2].job.error or ""),
        ),
        "key given back": import_once.delay(1).created,
        "purged old": queue.purge("completed", older_than=timedelta(hours=1)),
        "purged of emails": queue.purge("pending", queue="emails"),
        "pending left": place(queue.list_jobs("pending")),
        "purged completed": queue.purge("completed", name=jobs.add.name),
        "completed left": place(queue.list_jobs("completed")),
        "delete one": place(queue.delete_job(flow.steps[0].id)),
        "delete none": queue.delete_job("no-such-job"),
        "cancelled purged": queue.purge("cancelled"),
        "counts": queue.stats()["states"],
    }


def test_purge_and_delete_are_the_same_in_memory_and_in_redis(queue, configure):
    in_redis, in_memory = in_both(queue, configure, removal_scenario)

    assert in_memory == in_redis
    assert in_redis["refused"] == "Cannot delete running job #3"
    assert in_redis["deleted"] == [("#6", "waiting"), ("#4", "pending")]
    assert in_redis["after the deleted step"] == (
        "cancelled",
        "Not run: step #6 before it was deleted.",
    )
    assert in_redis["key given back"] is True
    assert (in_redis["purged old"], in_redis["purged of emails"]) == (0, 3)
    assert (in_redis["purged completed"], in_redis["completed left"]) == (3, ["#3"])
    assert in_redis["delete one"] == "#5"
    assert in_redis["delete none"] is None
    assert in_redis["cancelled purged"] == 1


# -- the testing modes alone --------------------------------------------------------------------


def test_a_requeued_job_runs_at_once_in_immediate_mode(no_redis, jobs_immediate):
    handle = jobs.flaky.using(max_retries=0).delay("x", 1)
    assert handle.status is JobStatus.FAILED

    assert JobQueue().requeue_dead() == [handle.id]

    assert handle.refresh().status is JobStatus.COMPLETED
    assert handle.result() == 2
    assert [e["attempt"] for e in handle.job.errors] == [1]


def test_a_group_whose_dead_member_is_requeued_finishes_in_immediate_mode(no_redis, jobs_immediate):
    members, callback = (
        group(jobs.add.s(1), jobs.flaky.using(max_retries=0).s("m", 1)).then(jobs.echo.s()).delay()
    ).steps
    with pytest.raises(TimeoutError, match="dead letters"):
        callback.result()

    JobQueue().requeue_dead([members.members[1].id])

    assert callback.result() == [1, 2]
    assert GroupHandle.of(callback.job).failed is None


def test_the_async_twins_answer_from_memory(no_redis, jobs_capture):
    dead = jobs.always_fails.using(max_retries=0).delay("a")
    drain()
    queue = JobQueue()

    async def main():
        page = await queue.apage("failed")
        stats = await queue.astats()
        requeued = await queue.arequeue_dead()
        return page.jobs, stats["states"]["failed"], requeued, await queue.alist_jobs("pending")

    failed, count, requeued, pending = asyncio.run(main())
    assert ([j.id for j in failed], count, requeued) == ([dead.id], 1, [dead.id])
    assert [j.id for j in pending] == [dead.id]


def test_the_clock_of_the_store_says_what_is_delayed_and_how_old(no_redis, jobs_capture):
    later = jobs.add.using(delay=600).delay(1)
    queue = JobQueue()
    assert queue.stats()["states"]["scheduled"] == 1

    jobs_capture.advance(900)

    stats = queue.stats()
    assert (stats["states"]["scheduled"], stats["queues"]["default"]["normal"]) == (0, 1)
    assert stats["oldest"]["default"]["normal"] == pytest.approx(300, abs=5)
    assert queue.page("pending").jobs[0].id == later.id
    assert queue.purge("pending") == 1
    assert jobs_capture.records() == []


def test_the_jobs_are_those_of_the_queues_prefix(no_redis, jobs_capture):
    jobs.add.delay(1)

    assert JobQueue(prefix="{elsewhere}").stats()["states"]["pending"] == 0
    assert JobQueue(prefix="{elsewhere}").page("pending").total == 0
    assert JobQueue().page("pending").total == 1


@pytest.mark.parametrize("call", [moving.move_queue, moving.pending_elsewhere])
def test_moving_a_queue_between_shards_is_refused_naming_the_mode(no_redis, jobs_capture, call):
    with pytest.raises(RuntimeError, match=rf"{call.__name__}\(\) .* 'capture' has none"):
        call(JobQueue(), "emails")
