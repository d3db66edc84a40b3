"""The "capture" testing mode: enqueued jobs are recorded, not run, until ``drain()`` runs them
(moving a clock for delays and retries); assertions on what was enqueued; and ``drain()`` of
what Redis holds, in the test's process, with the worker's own scripts."""

import asyncio
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import TestCase, override_settings

from django_jobs import JobQueue, JobStatus, signals
from django_jobs.testing import (
    assert_enqueued,
    assert_not_enqueued,
    capture_jobs,
    drain,
    enqueued,
    memory_store,
)
from tests import testing_jobs as jobs
from tests.census import assert_census
from tests.conftest import CLOSED_PORT

pytest_plugins = ["django_jobs.testing.pytest"]


@pytest.fixture(autouse=True)
def fresh_ledgers():
    jobs.attempts.clear()
    jobs.welcomed.clear()


def test_delay_records_the_job_and_runs_nothing(no_redis, jobs_capture):
    handle = jobs.add.using(priority="high").delay(1, b=2)

    assert handle.status is JobStatus.PENDING
    assert handle.refresh().status is JobStatus.PENDING
    (job,) = jobs_capture.assert_enqueued(
        jobs.add, args=[1], kwargs={"b": 2}, queue="default", priority="high", count=1
    )
    assert job.id == handle.id
    with pytest.raises(TimeoutError, match="'capture' jobs run only when drain"):
        handle.result(timeout=1)


def test_assert_enqueued_says_what_was_enqueued_instead(no_redis, jobs_capture):
    jobs.add.delay(1, 2)
    jobs.echo.delay("x")

    with pytest.raises(AssertionError) as failed:
        assert_enqueued(jobs.add, args=[2, 2])

    assert str(failed.value) == (
        "Expected a job tests.testing_jobs.add(args=[2, 2]) to have been enqueued; 0 enqueued.\n"
        "Enqueued as tests.testing_jobs.add (1):\n"
        "  tests.testing_jobs.add args=[1, 2] kwargs={} queue='default' priority=normal"
    )
    with pytest.raises(AssertionError, match=r"Expected 2 jobs .* 1 enqueued"):
        assert_enqueued(jobs.add, count=2)


def test_assert_not_enqueued_and_the_filters(no_redis, jobs_capture):
    due = jobs_capture.now + timedelta(hours=2)
    jobs.send_welcome.using(delay=timedelta(minutes=5), user_id=7).delay(42)
    jobs.send_welcome.using(at=due).delay(43)

    assert_enqueued(jobs.send_welcome, args=[42], delay=300, queue="emails", user_id=7)
    assert_enqueued(jobs.send_welcome, at=due, count=1)
    assert_enqueued("tests.testing_jobs.send_welcome", count=2)
    assert_not_enqueued(jobs.send_welcome, args=[42], delay=0)
    assert_not_enqueued(jobs.add)
    assert [j.args for j in enqueued(jobs.send_welcome)] == [[42], [43]]
    with pytest.raises(AssertionError, match=r"Expected no job .*send_welcome\(args=\[43\]\)"):
        assert_not_enqueued(jobs.send_welcome, args=[43])
    with pytest.raises(TypeError, match="a @job function, a task"):
        assert_enqueued(42)


def test_arguments_are_recorded_as_json_gives_them_back(no_redis, jobs_capture):
    tags = ["a"]
    jobs.echo.delay({"tags": tags})
    tags.append("b")  # changed after the enqueue: the record keeps what was sent

    assert_enqueued(jobs.echo, args=[{"tags": ["a"]}])


def test_drain_runs_the_captured_jobs_and_those_they_enqueue(no_redis, jobs_capture):
    handle = jobs.fan_out.delay(2)

    assert drain() == 3
    assert handle.result() == 2
    assert [j.result for j in jobs_capture.records() if j.name == "tests.testing_jobs.add"] == [
        100,
        101,
    ]
    assert drain() == 0


def test_drain_takes_jobs_by_priority_then_in_order(no_redis, jobs_capture):
    low = jobs.echo.using(priority="low").delay("low")
    first = jobs.echo.delay("first")
    critical = jobs.echo.using(priority="critical").delay("critical")
    second = jobs.echo.delay("second")
    started = []

    def receiver(job, **kwargs):
        started.append(job.id)

    signals.job_started.connect(receiver, weak=False)
    try:
        drain(queues=["default"])
    finally:
        signals.job_started.disconnect(receiver)

    assert started == [critical.id, first.id, second.id, low.id]


def test_delayed_jobs_run_once_the_clock_reaches_them(no_redis, jobs_capture):
    handle = jobs.add.using(delay=timedelta(minutes=10)).delay(1, 1)

    assert drain() == 0
    jobs_capture.advance(timedelta(minutes=9))
    assert drain() == 0
    assert drain(until=60) == 1
    assert handle.result() == 2


def test_retries_wait_their_backoff_on_the_clock(no_redis, jobs_capture):
    handle = jobs.flaky.delay("mail", 2)

    assert drain() == 1
    assert handle.refresh().status is JobStatus.RETRYING
    first_retry = handle.job.scheduled_at
    assert first_retry - jobs_capture.now > timedelta(seconds=110)  # 60 * 2**1
    assert drain(until=100) == 0
    assert drain(until=timedelta(minutes=10)) == 2  # 120 s, then 240 s later
    assert handle.result() == 3
    assert [e["attempt"] for e in handle.job.errors] == [1, 2]


def test_drain_until_inf_runs_everything_however_far_ahead(no_redis, jobs_capture):
    handle = jobs.always_fails.delay("boom")

    assert drain(until=float("inf")) == 3
    assert handle.refresh().status is JobStatus.FAILED


def test_a_captured_job_can_be_cancelled_before_it_runs(no_redis, jobs_capture):
    handle = jobs.add.delay(1, 1)

    assert handle.cancel() == "cancelled"
    assert drain() == 0
    assert handle.refresh().status is JobStatus.CANCELLED
    done = jobs.add.delay(2, 2)
    drain()
    assert done.cancel() == "finished"


def test_adelay_and_the_queue_api_are_captured_too(no_redis, jobs_capture):
    queue = JobQueue()

    asyncio.run(jobs.add.using(queue="reports").adelay(5))
    queue.enqueue("tests.testing_jobs.echo", ["q"])
    queue.enqueue_many([queue.build_job("tests.testing_jobs.echo", ["many"])])

    assert_enqueued(jobs.add, args=[5], queue="reports")
    assert [j.args for j in enqueued(jobs.echo)] == [["q"], ["many"]]
    assert drain(queues=["default"]) == 2
    assert jobs_capture.records(JobStatus.PENDING)[0].queue == "reports"


def test_a_task_of_djangos_task_api_is_captured(no_redis, jobs_capture):
    from tests.testapp import tasks

    result = tasks.add.enqueue(2, 3)

    assert result.status == "READY"
    assert_enqueued(tasks.add, args=[2, 3])
    drain()
    assert tasks.add.get_result(result.id).return_value == 5


def test_without_a_testing_mode_the_assertions_say_how_to_switch_one_on():
    with pytest.raises(RuntimeError, match="immediate_jobs\\(\\) or capture_jobs\\(\\)"):
        assert_enqueued(jobs.add)


@pytest.mark.django_db
def test_a_job_waiting_for_its_commit_is_named_by_the_failed_assertion(
    no_redis, jobs_capture, django_capture_on_commit_callbacks
):
    jobs.add.delay(1, 2)  # django_db runs the test in a transaction: it waits in the outbox

    with pytest.raises(AssertionError, match="1 job waits in the outbox"):
        assert_enqueued(jobs.add)
    with django_capture_on_commit_callbacks(execute=True):
        jobs.add.delay(3, 4)
    assert_enqueued(jobs.add, args=[3, 4], count=1)


# -- drain() with Redis: what Redis holds, run in this process with the worker's scripts -------


def test_drain_runs_what_redis_holds_under_the_test_prefix(queue, redis_client):
    handle = jobs.fan_out.delay(2)
    assert queue.get_job(handle.id).status is JobStatus.PENDING

    assert drain() == 3

    assert handle.result(timeout=1) == 2
    done = queue.list_jobs(JobStatus.COMPLETED, limit=10)
    assert sorted(j.result for j in done) == [2, 100, 101]
    assert all(j.worker_id.endswith(":drain") for j in done)
    assert_census(queue, redis_client, {j.id: "completed" for j in done})


def test_drain_with_redis_runs_delayed_jobs_and_retries_due_by_until(queue, redis_client):
    later = jobs.add.using(delay=600).delay(2, 2)
    failing = jobs.always_fails.delay("boom")

    assert drain() == 1  # the failing job's first attempt; the rest is due later
    assert queue.get_job(failing.id).status is JobStatus.RETRYING
    assert drain(until=timedelta(hours=1)) == 3

    assert later.result(timeout=1) == 4
    dead = queue.get_job(failing.id)
    assert (dead.status, len(dead.errors)) == (JobStatus.FAILED, 3)
    assert_census(queue, redis_client, {later.id: "completed", failing.id: "dead"})


def test_drain_with_redis_sends_the_signals(queue):
    seen = []

    def receiver(signal, job, **kwargs):
        seen.append((signal, job.name))

    signals.job_started.connect(receiver, weak=False)
    signals.job_succeeded.connect(receiver, weak=False)
    try:
        jobs.add.delay(1, 1)
        drain()
    finally:
        signals.job_started.disconnect(receiver)
        signals.job_succeeded.disconnect(receiver)

    assert seen == [
        (signals.job_started, "tests.testing_jobs.add"),
        (signals.job_succeeded, "tests.testing_jobs.add"),
    ]


# -- a project's TestCase ----------------------------------------------------------------------


@override_settings(DJANGO_JOBS={"REDIS_URL": CLOSED_PORT, "QUEUES": ["default", "emails"]})
@capture_jobs(attr_name="jobs")
class SignupTests(TestCase):
    """Each test gets a fresh store as ``self.jobs``; Redis is out of reach."""

    def test_signup_enqueues_the_welcome_mail_once_it_commits(self):
        with self.captureOnCommitCallbacks(execute=True):
            user = User.objects.create(username="ada", email="ada@example.com")
            jobs.send_welcome.delay(user.pk)

        self.jobs.assert_enqueued(jobs.send_welcome, args=[user.pk], queue="emails")
        assert jobs.welcomed == []
        assert self.jobs.drain() == 1
        assert jobs.welcomed == ["ada@example.com"]

    def test_nothing_is_enqueued_before_the_commit(self):
        user = User.objects.create(username="bob", email="bob@example.com")
        jobs.send_welcome.delay(user.pk)

        self.jobs.assert_not_enqueued(jobs.send_welcome)
        assert memory_store() is self.jobs

    def test_jobs_of_a_rolled_back_transaction_never_exist(self):
        from django.db import transaction

        with self.captureOnCommitCallbacks(execute=True), transaction.atomic():
            jobs.add.delay(1, 1)
            transaction.set_rollback(True)

        self.jobs.assert_not_enqueued()
