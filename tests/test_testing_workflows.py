"""Chains and groups in the testing modes: the in-memory store moves a workflow as
lua/_workflow.lua moves it in Redis (tests/test_workflow.py), in "immediate" mode at once and in
"capture" mode as drain() runs the steps. The last tests run the same workflows in memory and
in Redis (drain() in "redis" mode, through the worker's scripts) and compare how they end."""

import asyncio
import re
from datetime import timedelta

import pytest
from django.db import transaction

from django_jobs import GroupHandle, JobCancelled, JobFailed, JobStatus, chain, group
from django_jobs.testing import assert_enqueued, assert_not_enqueued, drain, jobs_mode
from tests import testing_jobs as jobs

pytest_plugins = ["django_jobs.testing.pytest"]


@pytest.fixture(autouse=True)
def fresh_ledgers():
    jobs.attempts.clear()


# -- immediate mode ---------------------------------------------------------------------------


def test_a_chain_runs_at_once_passing_each_result_on_and_si_gets_none(no_redis, jobs_immediate):
    handle = chain(jobs.add.s(1, 2), jobs.add.s(10), jobs.add.si(100, 1)).delay()

    first, second, third = handle.steps
    assert [s.status for s in handle.steps] == [JobStatus.COMPLETED] * 3, "read back already"
    assert (second.job.args, second.result()) == ([3, 10], 13)
    assert (third.job.args, third.result()) == ([100, 1], 101), "immutable: no result"
    assert handle.result() == 101
    assert (first.job.then, second.job.after) == (second.id, first.id)
    assert jobs_immediate.records("waiting") == []


def test_a_group_runs_its_members_then_its_callback_with_the_results_in_order(
    no_redis, jobs_immediate
):
    handle = group(jobs.add.s(i, 1000) for i in range(4)).then(jobs.echo.s()).delay()

    members, callback = handle.steps
    assert members.results() == [1000, 1001, 1002, 1003]
    assert (members.done, members.total, members.then) == (4, 4, callback.id)
    assert callback.job.args == [[1000, 1001, 1002, 1003]]
    assert handle.result() == [1000, 1001, 1002, 1003]
    assert group(jobs.add.s(1), jobs.add.s(2)).delay().results() == [1, 2]


def test_a_group_in_a_chain_gets_the_result_before_it_and_passes_its_list_on(
    no_redis, jobs_immediate
):
    handle = chain(jobs.add.s(1, 1), group(jobs.add.s(10), jobs.add.s(20)), jobs.echo.s()).delay()

    assert [m.job.args for m in handle.steps[1].members] == [[2, 10], [2, 20]]
    assert handle.result() == [12, 22]
    assert GroupHandle.of(handle.steps[2].job).done == 2


def test_a_step_that_fails_after_its_retries_cancels_the_rest_naming_it(no_redis, jobs_immediate):
    handle = chain(jobs.always_fails.s("boom"), jobs.add.s(1), jobs.add.s(2)).delay()

    dead, second, third = handle.steps
    assert dead.status is JobStatus.FAILED
    assert len(dead.job.errors) == 3, "its two retries ran first"
    with pytest.raises(JobFailed, match="boom"):
        dead.result()
    for step in (second, third):
        assert step.status is JobStatus.CANCELLED
        assert step.job.error == (
            f"Not run: step {dead.id} before it failed (it is in the dead letters)."
        )
    with pytest.raises(JobCancelled):
        handle.result()
    assert [j.id for j in jobs_immediate.records("failed")] == [dead.id]


def test_a_dead_group_member_holds_the_callback_back(no_redis, jobs_immediate):
    handle = (
        group(jobs.add.s(1), jobs.always_fails.using(max_retries=0).s("boom"), jobs.add.s(3))
        .then(jobs.echo.s())
        .delay()
    )

    members, callback = handle.steps
    assert (members.done, members.failed.id) == (2, members.members[1].id)
    assert callback.status is JobStatus.WAITING
    with pytest.raises(TimeoutError, match=rf"{members.members[1].id} is in the dead letters"):
        callback.result()
    with pytest.raises(JobFailed):
        members.results()
    assert members.cancel() == "finished", "the group's own members all ended"
    assert handle.cancel() == "cancelled", "the chain's steps include the callback"
    assert callback.refresh().status is JobStatus.CANCELLED


def test_a_flaky_step_is_retried_and_the_chain_goes_on(no_redis, jobs_immediate):
    handle = chain(jobs.flaky.s("step", 2), jobs.add.s(100)).delay()

    assert handle.result() == 103
    assert len(handle.steps[0].job.errors) == 2


def test_adelay_runs_the_workflow_and_the_async_handle_answers(no_redis, jobs_immediate):
    async def main():
        handle = await chain(jobs.add.s(1, 2), jobs.add.s(3)).adelay()
        return await handle.aresult()

    assert asyncio.run(main()) == 6


# -- capture mode -----------------------------------------------------------------------------


def test_only_the_ready_step_is_enqueued_and_drain_releases_the_next(no_redis, jobs_capture):
    handle = chain(
        jobs.add.using(queue="emails").s(1, 2), jobs.add.s(10), jobs.echo.si("done")
    ).delay()
    _, second, third = handle.steps

    assert_enqueued(jobs.add, args=[1, 2], queue="emails", count=1)
    assert_not_enqueued(jobs.echo)
    assert [j.id for j in jobs_capture.records("waiting")] == [second.id, third.id]
    assert second.refresh().status is JobStatus.WAITING
    with pytest.raises(TimeoutError, match="drain"):
        handle.result()

    assert drain(queues=["emails"]) == 1
    assert_enqueued(jobs.add, args=[3, 10], queue="default", count=1)
    assert second.refresh().status is JobStatus.PENDING
    assert third.refresh().status is JobStatus.WAITING

    assert drain() == 2, "the second step, then the third it released"
    assert handle.result() == "done"
    assert [j.name for j in jobs_capture.enqueued] == [
        "tests.testing_jobs.add",
        "tests.testing_jobs.add",
        "tests.testing_jobs.echo",
    ]


def test_a_retrying_step_holds_the_next_until_the_clock_reaches_its_retry(no_redis, jobs_capture):
    handle = chain(jobs.flaky.s("step", 1), jobs.add.s(5)).delay()

    assert drain() == 1
    assert handle.steps[0].refresh().status is JobStatus.RETRYING
    assert_not_enqueued(jobs.add)
    assert drain(until=timedelta(minutes=10)) == 2
    assert_enqueued(jobs.add, args=[2, 5])
    assert handle.result() == 7


def test_a_group_enqueues_its_members_and_drain_releases_the_callback(no_redis, jobs_capture):
    handle = group(jobs.add.s(i, 10) for i in range(3)).then(jobs.echo.s()).delay()
    members, callback = handle.steps

    assert_enqueued(jobs.add, count=3)
    assert_not_enqueued(jobs.echo)
    assert members.refresh().done == 0
    assert drain(queues=["default"], limit=10) == 4
    assert_enqueued(jobs.echo, args=[[10, 11, 12]], count=1)
    assert (members.refresh().done, callback.refresh().status) == (3, JobStatus.COMPLETED)


def test_cancelling_cancels_what_waits_and_drain_runs_nothing_of_it(no_redis, jobs_capture):
    handle = chain(jobs.add.s(1), jobs.add.s(2), jobs.add.s(3)).delay()
    other = chain(jobs.add.s(1), jobs.add.s(2), jobs.add.s(3)).delay()

    assert handle.cancel() == "cancelled"
    assert [s.refresh().status for s in handle.steps] == [JobStatus.CANCELLED] * 3
    assert (
        handle.steps[2].job.error == f"Not run: step {handle.steps[0].id} before it was cancelled."
    )
    assert other.steps[1].cancel() == "cancelled"
    assert drain() == 1, "only the first step of the other chain"
    assert other.steps[2].refresh().status is JobStatus.CANCELLED


def test_cancelling_a_group_member_cancels_the_callback_and_the_others_finish_uncounted(
    no_redis, jobs_capture
):
    handle = group(jobs.add.s(1), jobs.add.s(2)).then(jobs.echo.s()).delay()
    members, callback = handle.steps

    assert members.members[0].cancel() == "cancelled"
    assert callback.refresh().status is JobStatus.CANCELLED
    assert drain() == 1
    assert members.refresh().done == 0
    assert members.cancelled == f"Not run: step {members.members[0].id} before it was cancelled."


@pytest.mark.django_db
def test_a_chain_made_in_a_transaction_is_captured_once_it_commits(
    no_redis, jobs_capture, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        handle = chain(jobs.add.s(1, 2), jobs.add.s(3)).delay()
        assert_not_enqueued()
    assert_enqueued(jobs.add, args=[1, 2], count=1)

    assert drain() == 2
    assert handle.result() == 6


# -- the same workflows in memory and in Redis ------------------------------------------------


def run_workflows() -> list[tuple]:
    """Enqueue three workflows (one passes results through a group, one has a step that fails,
    one a member that fails), drain them with the retries, and say how each step ended (its
    status, arguments, result and error) and each group (done, total, its failed member and
    why it was cancelled), step ids written as their place."""
    handles = [
        chain(jobs.add.s(1, 2), group(jobs.add.s(10), jobs.add.s(20)), jobs.echo.s()).delay(),
        chain(jobs.flaky.s("a", 1), jobs.always_fails.si("boom"), jobs.add.s(1)).delay(),
        group(jobs.add.s(1), jobs.always_fails.s("x")).then(jobs.echo.si("cb")).delay(),
    ]
    drain(until=timedelta(hours=2))
    steps, groups = [], []
    for handle in handles:
        for step in handle.refresh().steps:
            groups += [step] if isinstance(step, GroupHandle) else []
            steps += step.members if isinstance(step, GroupHandle) else [step]
    places = {step.id: f"#{n}" for n, step in enumerate(steps)}

    def named(text):
        return re.sub("|".join(places), lambda found: places[found.group()], text or "")

    return [
        (s.job.name, s.status.value, s.job.args, s.job.result, named(s.job.error).split("\n")[0])
        for s in steps
    ] + [(g.done, g.total, g.failed and places[g.failed.id], g.cancelled) for g in groups]


@pytest.mark.parametrize("mode", ["capture", "immediate"])
def test_the_same_workflows_end_the_same_in_memory_and_in_redis(queue, mode):
    in_redis = run_workflows()
    assert len(queue.page("waiting").jobs) == 1, "in Redis: the callback the dead member holds"
    jobs.attempts.clear()
    with jobs_mode(mode):
        in_memory = run_workflows()

    assert in_memory == in_redis
    assert in_redis[-2:] == [(2, 2, None, None), (1, 2, "#8", None)]
    assert [(status, result) for _, status, _, result, _ in in_redis[:-2]] == [
        ("completed", 3),
        ("completed", 13),
        ("completed", 23),
        ("completed", [13, 23]),
        ("completed", 2),
        ("failed", None),
        ("cancelled", None),
        ("completed", 1),
        ("failed", None),
        ("waiting", None),
    ]
    assert in_redis[6][4] == "Not run: step #5 before it failed (it is in the dead letters)."
