"""Chains and groups at the script level: each rule of lua/_workflow.lua, one round trip each,
driven through the worker's lease protocol without worker processes (tests/
test_workflow_faults.py runs them with real workers)."""

import time

import pytest

from django_jobs import JobCancelled, JobStatus, chain, group, job
from django_jobs.worker.leases import Leases
from tests.census import assert_census, untimed_keys


@job
def plus(a: int, b: int = 0) -> int:
    return a + b


@job
def total(values: list) -> int:
    return sum(values)


@job
def echo(*values):
    return list(values)


@job(unique=True)
def only_once(n: int) -> int:
    return n


def take(queue, lease=30):
    return Leases(queue.prefix).dequeue(lease=lease)


def run_next(queue, compute=None):
    """Take the next job and complete it with ``compute(job)`` (default: run its function)."""
    taken = take(queue)
    assert taken is not None, "a job is ready"
    result = (
        compute(taken)
        if compute
        else {"plus": plus, "total": total, "echo": echo}[taken.name.rsplit(".", 1)[1]](
            *taken.args, **taken.kwargs
        )
    )
    assert Leases(queue.prefix).complete_job(taken, result)
    return taken, result


def test_a_chain_waits_step_by_step_and_passes_each_result_on(queue, redis_client):
    handle = chain(plus.s(1, 2), plus.s(10), plus.si(100, 1)).delay()
    first, second, third = handle.steps
    assert_census(
        queue,
        redis_client,
        {first.id: "queue:default:normal", second.id: "waiting", third.id: "waiting"},
    )
    assert second.refresh().status is JobStatus.WAITING
    assert second.job.after == first.id
    assert first.refresh().job.then == second.id

    taken, _ = run_next(queue)
    assert taken.id == first.id
    taken, result = run_next(queue)
    assert (taken.id, taken.args, result) == (second.id, [3, 10], 13)
    taken, result = run_next(queue)
    assert (taken.id, taken.args, result) == (third.id, [100, 1], 101), "immutable: no result"
    assert handle.result(timeout=1) == 101
    assert take(queue) is None
    assert untimed_keys(queue.prefix, redis_client) == []


def test_results_pass_as_json_text_so_numbers_keep_their_precision(queue):
    handle = plus.s(0).then(echo.s("x")).delay()
    big = {"n": 2**70 + 1, "f": 0.1 + 0.2, "s": "é\u2028"}
    run_next(queue, lambda job: big)
    taken, _ = run_next(queue)
    assert taken.args == [big, "x"]
    assert handle.result(timeout=1) == [big, "x"]


def test_a_group_runs_its_callback_once_with_every_result_in_member_order(queue, redis_client):
    handle = group(plus.s(i, 1000) for i in range(5)).then(echo.s("done")).delay()
    grp, callback = handle.steps
    taken = [take(queue) for _ in range(5)]
    assert take(queue) is None, "the callback waits"
    leases = Leases(queue.prefix)
    for job_ in reversed(taken):  # finish out of order
        assert leases.complete_job(job_, job_.args[0] * 10)
        assert leases.complete_job(job_, -1), "the same ack again answers as the first"
    assert grp.refresh().done == 5
    cb, result = run_next(queue)
    assert cb.id == callback.id
    assert result == [[0, 10, 20, 30, 40], "done"]
    assert take(queue) is None
    assert grp.results(timeout=1) == [0, 10, 20, 30, 40]
    assert untimed_keys(queue.prefix, redis_client) == []
    assert redis_client.ttl(queue.keys.group(grp.id)) > 0


def test_a_member_whose_lease_was_taken_back_counts_once(queue, redis_client):
    handle = group(plus.s(1), plus.s(2)).then(total.s()).delay()
    leases = Leases(queue.prefix)
    lost = take(queue, lease=0.05)
    time.sleep(0.1)
    assert leases.recover_expired().requeued == [lost.id]
    again, other = take(queue), take(queue)  # recovered at the head of its list
    assert again.id == lost.id
    assert not leases.complete_job(lost, 1), "the lost worker's ack is stale"
    assert handle.steps[0].refresh().done == 0
    assert leases.complete_job(again, 1)
    assert leases.complete_job(other, 2)
    cb, result = run_next(queue)
    assert cb.args == [[1, 2]]
    assert result == 3


def test_a_group_in_the_middle_of_a_chain_gives_each_member_the_result_before_it(queue):
    chain(plus.s(1, 1), group(plus.s(10), plus.s(20)), total.s()).delay()
    run_next(queue)
    members = sorted(take(queue).args for _ in range(2))
    assert members == [[2, 10], [2, 20]]


def test_a_dead_chain_step_cancels_the_rest_naming_it(queue, redis_client):
    handle = chain(plus.using(max_retries=0).s(1), plus.s(2), plus.s(3)).delay()
    first, second, third = handle.steps
    assert Leases(queue.prefix).fail_job(take(queue), "boom") is JobStatus.FAILED
    for step in (second, third):
        assert step.refresh().status is JobStatus.CANCELLED
        assert first.id in step.job.error
        assert "failed" in step.job.error
    with pytest.raises(JobCancelled):
        handle.result(timeout=1)
    assert_census(
        queue, redis_client, {first.id: "dead", second.id: "cancelled", third.id: "cancelled"}
    )


def test_a_dead_member_fails_its_group_and_requeueing_it_lets_the_group_finish(queue):
    handle = group(plus.using(max_retries=0).s(i) for i in range(3)).then(total.s()).delay()
    grp, callback = handle.steps
    leases = Leases(queue.prefix)
    first = take(queue)
    assert leases.fail_job(first, "boom") is JobStatus.FAILED
    for _ in range(2):
        run_next(queue)
    assert grp.refresh().failed.id == first.id
    assert grp.done == 2
    assert take(queue) is None
    assert callback.refresh().status is JobStatus.WAITING

    assert queue.requeue_dead([first.id]) == [first.id]
    assert grp.refresh().failed is None
    run_next(queue)
    cb, result = run_next(queue)
    assert (cb.id, result) == (callback.id, 3)


def test_cancelling_a_chain_cancels_what_did_not_start_and_stops_what_runs(queue, redis_client):
    handle = chain(plus.s(1), plus.s(2), plus.s(3)).delay()
    running = take(queue)
    assert handle.cancel() == "requested"
    assert [s.refresh().status for s in handle.steps[1:]] == [JobStatus.CANCELLED] * 2
    assert queue.cancel_job(running.id, running.lease_token) == "cancelled"
    assert take(queue) is None
    assert untimed_keys(queue.prefix, redis_client) == []


def test_cancelling_a_group_cancels_its_members_and_its_callback(queue, redis_client):
    handle = group(plus.s(i) for i in range(3)).then(total.s()).delay()
    assert handle.steps[0].cancel() == "cancelled"
    assert handle.refresh().steps[1].status is JobStatus.CANCELLED
    assert "cancelled" in handle.steps[1].job.error
    assert take(queue) is None
    assert untimed_keys(queue.prefix, redis_client) == []


def test_cancelling_one_waiting_step_cancels_the_steps_after_it(queue):
    handle = chain(plus.s(1), plus.s(2), plus.s(3)).delay()
    assert queue.cancel_job(handle.steps[1].id) == "cancelled"
    assert handle.steps[2].refresh().status is JobStatus.CANCELLED
    run_next(queue)
    assert take(queue) is None, "the cancelled step is not started"


def test_a_group_is_found_again_from_any_of_its_members_or_its_callback(queue):
    from django_jobs import GroupHandle

    handle = group(plus.s(i) for i in range(3)).then(total.s()).delay()
    grp, callback = handle.steps
    run_next(queue)

    for step in (grp.members[2], callback):
        found = GroupHandle.of(step.refresh().job)
        assert [m.id for m in found.members] == [m.id for m in grp.members]
        assert (found.done, found.total, found.then) == (1, 3, callback.id)
    assert GroupHandle.of(plus.delay(1).job) is None


def test_deleting_a_step_before_it_completed_cancels_the_steps_that_wait_for_it(
    queue, redis_client
):
    handle = chain(plus.s(1), plus.s(2), plus.s(3)).delay()
    queue.delete_job(handle.steps[0].id)

    later = [s.refresh().job for s in handle.steps[1:]]
    assert [j.status for j in later] == [JobStatus.CANCELLED] * 2
    assert "deleted" in later[0].error
    assert take(queue) is None
    assert untimed_keys(queue.prefix, redis_client) == [], "nothing waits for ever"


def test_deleting_a_dead_group_member_cancels_the_callback_that_waited_for_it(queue, redis_client):
    handle = group(plus.using(max_retries=0).s(i) for i in range(2)).then(total.s()).delay()
    grp, callback = handle.steps
    assert Leases(queue.prefix).fail_job(take(queue), "boom") is JobStatus.FAILED
    run_next(queue)
    dead = grp.refresh().failed

    assert queue.purge("failed") == 1
    assert callback.refresh().status is JobStatus.CANCELLED
    assert f"step {dead.id} before it was deleted" in callback.job.error
    assert untimed_keys(queue.prefix, redis_client) == []


def test_waiting_steps_are_counted_listed_purged_and_deleted_like_other_states(queue, redis_client):
    handle = chain(plus.s(1), plus.s(2), plus.s(3)).delay()
    assert queue.stats()["states"]["waiting"] == 2
    assert [j.id for j in queue.page("waiting").jobs] == [s.id for s in handle.steps[1:]]
    assert [j.id for j in queue.delete_jobs([handle.steps[2].id])] == [handle.steps[2].id]
    assert queue.purge("waiting") == 1
    assert_census(queue, redis_client, {handle.steps[0].id: "queue:default:normal"})


def test_unique_steps_and_delays_after_the_first_step_are_refused(queue):
    with pytest.raises(ValueError, match="unique"):
        chain(plus.s(1), only_once.s()).delay()
    with pytest.raises(ValueError, match="first step"):
        chain(plus.s(1), plus.using(delay=5).s()).delay()
    with pytest.raises(TypeError, match="argument"):
        chain(plus.s(1), plus.s(1, 2)).delay()  # with the result in front: three arguments
    with pytest.raises(ValueError, match="at least one"):
        group([])
    assert queue.stats()["states"]["waiting"] == 0
