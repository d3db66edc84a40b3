"""The "immediate" testing mode: ``.delay()`` (and every other enqueue) runs the job at once in
the test's process, through the worker's own code, and the handle answers from memory. Redis
is pointed at a closed port in these tests: nothing here may reach it."""

import asyncio
import inspect
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.core import mail
from django.db import transaction
from django.test import TestCase, override_settings

from django_jobs import JobFailed, JobHandle, JobQueue, JobStatus, RedisUnavailable, signals
from django_jobs.checks import check_mode, check_redis, check_settings
from django_jobs.conf import InvalidSetting
from django_jobs.testing import MemoryStore, immediate_jobs, memory_store
from tests import testing_jobs as jobs
from tests.conftest import CLOSED_PORT

pytest_plugins = ["django_jobs.testing.pytest"]


@pytest.fixture(autouse=True)
def fresh_ledgers(no_redis):
    jobs.attempts.clear()
    jobs.welcomed.clear()


@pytest.fixture
def sent():
    """Every django_jobs signal sent during the test: (signal name, job id, attempt, details)."""
    names = {
        signals.job_started: "started",
        signals.job_succeeded: "succeeded",
        signals.job_failed: "failed",
        signals.job_dead: "dead",
    }
    seen = []

    def receiver(signal, sender, job, **details):
        seen.append((names[signal], job.name, job.attempt, sender, details))

    for signal in names:
        signal.connect(receiver, weak=False)
    yield seen
    for signal in names:
        signal.disconnect(receiver)


@pytest.mark.parametrize(
    "name",
    [
        *("enqueue", "enqueue_many", "get_job", "get_jobs", "watch", "wait_for", "cancel_job"),
        *("enqueue_flow", "cancel_flow", "group"),
    ],
)
def test_the_store_answers_each_routed_method_with_the_same_arguments(name):
    plan = inspect.signature(getattr(JobQueue, name).__wrapped__)
    answer = inspect.signature(getattr(MemoryStore, name))

    # (self, queue, ...) answers (self, ...): the queue whose method was called comes first.
    assert list(answer.parameters.values())[2:] == list(plan.parameters.values())[1:]


def test_redis_is_really_out_of_reach_in_these_tests():
    with pytest.raises(RedisUnavailable):
        jobs.add.delay(1, 2)


def test_delay_runs_the_job_at_once_and_its_handle_answers_without_redis(jobs_immediate):
    handle = jobs.add.delay(2, 3)

    assert handle.status is JobStatus.COMPLETED
    assert handle.result() == 5
    assert handle.refresh().job.started_at is not None
    assert handle.job.worker_id == "in-process"
    assert JobHandle.from_id(handle.id).result(timeout=1) == 5
    assert JobQueue().get_job(handle.id).status is JobStatus.COMPLETED
    assert jobs_immediate.record(handle.id).result == 5


def test_arguments_and_result_make_the_json_round_trip(jobs_immediate):
    value = {"tags": ["a", "b"], "nested": {"n": 1.5, "none": None}}

    handle = jobs.echo.delay(value)

    assert handle.result() == value
    assert handle.result() is not value
    assert handle.job.args == [value]
    assert handle.job.args[0] is not value


def test_a_failing_job_is_retried_at_once_until_its_retries_run_out(jobs_immediate):
    started = jobs_immediate.now

    handle = jobs.always_fails.delay("boom")

    assert handle.status is JobStatus.FAILED
    with pytest.raises(JobFailed, match="ValueError: boom"):
        handle.result()
    errors = handle.job.errors
    assert [e["attempt"] for e in errors] == [1, 2, 3]
    assert all(e["error"] == "ValueError: boom" for e in errors)
    assert "raise ValueError(message)" in errors[-1]["traceback"]
    assert handle.job.retry_count == 2
    # Each retry waited its backoff (120 s, then 240 s) on the store's clock.
    assert jobs_immediate.now - started >= timedelta(seconds=360)
    assert [j.id for j in jobs_immediate.records("failed")] == [handle.id]


def test_a_flaky_job_completes_on_a_later_attempt_with_its_failures_kept(jobs_immediate):
    handle = jobs.flaky.delay("payment", 2)

    assert handle.result() == 3
    assert handle.job.retry_count == 2
    assert [e["error"] for e in handle.job.errors] == [
        "ConnectionError: payment: attempt 1 failed",
        "ConnectionError: payment: attempt 2 failed",
    ]


def test_the_signals_are_those_a_worker_sends(jobs_immediate, sent):
    jobs.flaky.using(max_retries=1).delay("a", 1)
    jobs.always_fails.using(max_retries=1).delay("boom")

    assert [s[:3] for s in sent] == [
        ("started", "tests.testing_jobs.flaky", 1),
        ("failed", "tests.testing_jobs.flaky", 1),
        ("started", "tests.testing_jobs.flaky", 2),
        ("succeeded", "tests.testing_jobs.flaky", 2),
        ("started", "tests.testing_jobs.always_fails", 1),
        ("failed", "tests.testing_jobs.always_fails", 1),
        ("started", "tests.testing_jobs.always_fails", 2),
        ("failed", "tests.testing_jobs.always_fails", 2),
        ("dead", "tests.testing_jobs.always_fails", 2),
    ]
    assert sent[0][3] is jobs.flaky
    retried, succeeded, dead = sent[1][4], sent[3][4], sent[8][4]
    assert retried["will_retry"] is True
    assert retried["due"] is not None
    assert isinstance(retried["exception"], ConnectionError)
    assert succeeded["result"] == 2
    assert dead["error"] == "ValueError: boom"


def test_a_return_value_that_is_not_json_fails_at_once_without_retries(jobs_immediate):
    handle = jobs.returns_a_set.delay()

    assert handle.status is JobStatus.FAILED
    assert handle.job.error.startswith("NotJSONSerializable: the return value")
    assert len(handle.job.errors) == 1


def test_jobs_enqueued_by_a_job_run_after_it_as_on_a_worker(jobs_immediate, sent):
    handle = jobs.fan_out.delay(3)

    assert handle.result() == 3
    children = [j for j in jobs_immediate.records() if j.name == "tests.testing_jobs.add"]
    assert [c.result for c in children] == [100, 101, 102]
    order = [(s[0], s[1]) for s in sent if s[0] in ("started", "succeeded")]
    assert order[:2] == [
        ("started", "tests.testing_jobs.fan_out"),
        ("succeeded", "tests.testing_jobs.fan_out"),
    ]


def test_a_job_can_wait_for_the_result_of_a_job_it_enqueued(jobs_immediate):
    assert jobs.add_later.delay(1, 2).result() == 30


def test_a_delayed_job_runs_at_once_with_the_clock_moved_to_its_due_time(jobs_immediate):
    handle = jobs.add.using(delay=timedelta(hours=1)).delay(1, 1)

    assert handle.result() == 2
    assert handle.job.started_at >= handle.job.scheduled_at
    assert jobs_immediate.now >= handle.job.scheduled_at


def test_the_queue_api_enqueues_run_too(jobs_immediate):
    queue = JobQueue()

    job = queue.enqueue("tests.testing_jobs.add", [4, 5])
    many = queue.enqueue_many([queue.build_job("tests.testing_jobs.echo", ["x"]) for _ in "ab"])

    assert (job.status, job.result) == (JobStatus.COMPLETED, 9)
    assert [j.result for j in many] == ["x", "x"]
    assert queue.get_jobs([job.id, many[0].id, "unknown"]).keys() == {job.id, many[0].id}


def test_adelay_runs_the_job_and_the_async_handle_answers(jobs_immediate):
    async def main():
        handle = await jobs.add.adelay(20, 22)
        again = await JobHandle.afrom_id(handle.id)
        return handle.status, await again.aresult(timeout=1), await handle.acancel()

    assert asyncio.run(main()) == (JobStatus.COMPLETED, 42, "finished")


@pytest.mark.django_db
def test_an_async_job_runs_with_the_database_of_the_test(
    jobs_immediate, django_capture_on_commit_callbacks
):
    # django_db runs the test in a transaction: .delay() waits for its commit, which
    # pytest-django's django_capture_on_commit_callbacks(execute=True) stands for.
    with django_capture_on_commit_callbacks(execute=True):
        User.objects.create(username="ada")
        User.objects.create(username="adam")
        handle = jobs.count_users.delay("ad")

    assert handle.result() == 2


def test_a_task_of_djangos_task_api_runs_at_once():
    from tests.testapp import tasks

    with immediate_jobs():
        result = tasks.add.enqueue(2, 3)

        assert result.status == "SUCCESSFUL"
        assert result.return_value == 5
        assert tasks.add.get_result(result.id).return_value == 5


def test_override_settings_alone_switches_it_on_and_a_fresh_store_follows(settings):
    with override_settings(DJANGO_JOBS={**settings.DJANGO_JOBS, "MODE": "immediate"}):
        handle = jobs.add.delay(1, 2)
        assert handle.status is JobStatus.COMPLETED
        assert [j.id for j in memory_store().enqueued] == [handle.id]

    with override_settings(DJANGO_JOBS={**settings.DJANGO_JOBS, "MODE": "immediate"}):
        assert memory_store().enqueued == []


def test_a_bad_mode_is_named_where_it_is_read_and_by_the_checks(configure):
    configure(MODE="eager")

    with pytest.raises(InvalidSetting, match="MODE'] must be one of 'redis', 'immediate'"):
        jobs.add.delay(1, 2)
    assert [m.id for m in check_settings()] == ["django_jobs.E014"]


def test_a_testing_mode_outside_tests_is_a_warning(configure, monkeypatch):
    configure(MODE="immediate")
    monkeypatch.delattr(mail, "outbox")  # as outside Django's test environment

    assert [m.id for m in check_mode()] == ["django_jobs.W005"]
    assert check_redis() == [], "no Redis is needed in a testing mode"


@override_settings(DJANGO_JOBS={"REDIS_URL": CLOSED_PORT, "QUEUES": ["default", "emails"]})
@immediate_jobs(attr_name="jobs")
class WelcomeMailTests(TestCase):
    """A project's TestCase: its tests run in a transaction, so a ``.delay()`` waits for the
    commit that captureOnCommitCallbacks(execute=True) stands for."""

    def test_the_welcome_mail_is_sent_once_the_signup_commits(self):
        with self.captureOnCommitCallbacks(execute=True):
            user = User.objects.create(username="ada", email="ada@example.com")
            handle = jobs.send_welcome.delay(user.pk)
            assert handle.status == JobStatus.WAITING_FOR_COMMIT

        assert handle.result() == "ada@example.com"
        assert jobs.welcomed == ["ada@example.com"]
        # The job ran inside the test's transaction without closing its connection.
        assert User.objects.filter(username="ada").exists()

    def test_without_the_commit_nothing_runs(self):
        user = User.objects.create(username="bob", email="bob@example.com")

        handle = jobs.send_welcome.delay(user.pk)

        assert handle.refresh().status == JobStatus.WAITING_FOR_COMMIT
        assert self.jobs.enqueued == []
        assert jobs.welcomed == []

    def test_each_test_starts_with_a_fresh_store(self):
        assert self.jobs.enqueued == []
        with self.captureOnCommitCallbacks(execute=True):
            handle = jobs.add.delay(1, 1)

        assert handle.result() == 2
        assert len(self.jobs.enqueued) == 1

    def test_an_async_job_reads_the_rows_of_the_test_transaction(self):
        with self.captureOnCommitCallbacks(execute=True):
            User.objects.create(username="carl")
            handle = jobs.count_users.delay("ca")

        assert handle.result() == 1

    def test_outside_the_outbox_a_job_runs_inside_the_transaction(self):
        user = User.objects.create(username="dora", email="dora@example.com")

        no_outbox = {**django_settings.DJANGO_JOBS, "ENQUEUE_ON_COMMIT": False}
        with override_settings(DJANGO_JOBS=no_outbox), transaction.atomic():
            assert jobs.send_welcome.delay(user.pk).result() == "dora@example.com"

        assert User.objects.count() == 1
