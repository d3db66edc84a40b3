"""``@job``, ``.delay()``, ``.using()`` and the handle, in the web process (no worker)."""

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction

from django_jobs import (
    JobCancelled,
    JobFailed,
    JobFunction,
    JobHandle,
    JobNotFound,
    JobPriority,
    JobStatus,
    NotJSONSerializable,
    job,
    registry,
)
from django_jobs.worker.leases import Leases
from tests.testapp import jobs


@pytest.fixture
def scratch_registry():
    """Forget the jobs a test registers."""
    before = set(registry.names())
    yield registry
    for name in set(registry.names()) - before:
        registry.unregister(name)


def test_bare_decorator_registers_by_module_path_and_name():
    assert isinstance(jobs.add, JobFunction)
    assert jobs.add.name == "tests.testapp.jobs.add"
    assert registry.get("tests.testapp.jobs.add") is jobs.add


def test_decorator_options_set_the_defaults_of_each_run(scratch_registry, queue):
    @job(name="reports.build", queue="reports", priority="high", max_retries=7, timeout=9)
    def build(day):
        return day

    stored = queue.get_job(build.delay("monday").id)

    assert (stored.name, stored.queue, stored.priority) == (
        "reports.build",
        "reports",
        JobPriority.HIGH,
    )
    assert (stored.max_retries, stored.timeout, stored.args) == (7, 9, ["monday"])


def test_calling_a_job_runs_it_inline():
    assert jobs.add(2, 3) == 5


def test_apps_jobs_modules_are_discovered_at_startup():
    assert "tests.record" in registry.names()


def test_a_second_function_under_a_registered_name_fails_loudly(scratch_registry):
    with pytest.raises(ValueError, match=r"already registered by tests\.testapp\.jobs\.add"):

        @job(name="tests.testapp.jobs.add")
        def other(a, b):
            return a - b


def test_unknown_decorator_option_is_refused():
    with pytest.raises(TypeError, match="unknown options: retries"):
        job(retries=3)


def test_bad_priority_is_refused_at_decoration(scratch_registry):
    with pytest.raises(ValueError, match="Unknown priority 'urgent'"):

        @job(priority="urgent")
        def urgent():
            pass


def test_delay_returns_a_handle_with_the_job_id(queue):
    handle = jobs.add.delay(1, 2)

    assert handle.status is JobStatus.PENDING
    stored = queue.get_job(handle.id)
    assert (stored.name, stored.args) == ("tests.testapp.jobs.add", [1, 2])


def test_using_overrides_the_options_of_one_call(queue):
    at = datetime.now(UTC) + timedelta(hours=1)
    handle = jobs.add.using(
        priority="critical", queue="emails", at=at, max_retries=0, timeout=5, user_id=9
    ).delay(1, b=2)

    stored = queue.get_job(handle.id)
    assert stored.priority is JobPriority.CRITICAL
    assert stored.queue == "emails"
    assert stored.scheduled_at == at
    assert (stored.max_retries, stored.timeout, stored.user_id) == (0, 5, 9)
    assert stored.kwargs == {"b": 2}


def test_model_instance_argument_is_refused_before_anything_reaches_redis(queue, redis_client, db):
    from django.contrib.auth.models import User

    with pytest.raises(NotJSONSerializable, match=r"kwargs\['user'\].*instance\.pk"):
        jobs.record.delay(user=User(pk=3))

    assert list(redis_client.scan_iter(match=f"{queue.prefix}*")) == []


@pytest.mark.django_db(transaction=True)
def test_delay_inside_a_transaction_enqueues_on_commit(queue):
    with transaction.atomic():
        handle = jobs.add.delay(1, 2)
        assert queue.get_job(handle.id) is None

    assert queue.get_job(handle.id).status is JobStatus.PENDING


@pytest.mark.django_db(transaction=True)
def test_delay_inside_a_rolled_back_transaction_never_enqueues(queue, redis_client):
    def signup_that_fails():
        with transaction.atomic():
            signup_that_fails.handle = jobs.add.delay(1, 2)
            raise RuntimeError("rollback")

    with pytest.raises(RuntimeError):
        signup_that_fails()

    handle = signup_that_fails.handle

    assert handle.id
    assert queue.get_job(handle.id) is None
    assert list(redis_client.scan_iter(match=f"{queue.prefix}:job:*")) == []


@pytest.mark.django_db(transaction=True)
def test_enqueue_on_commit_can_be_turned_off(jobs_settings, queue):
    jobs_settings.DJANGO_JOBS = {**jobs_settings.DJANGO_JOBS, "ENQUEUE_ON_COMMIT": False}

    with transaction.atomic():
        handle = jobs.add.delay(1, 2)
        assert queue.get_job(handle.id) is not None


def test_adelay_enqueues_from_async_code(queue):
    async def view():
        handle = await jobs.add.using(priority="high").adelay(4, 5)
        await handle.arefresh()
        return handle

    handle = asyncio.run(view())

    assert handle.status is JobStatus.PENDING
    assert queue.get_job(handle.id).priority is JobPriority.HIGH


def finish_soon(queue, outcome, delay=0.2):
    """Play the worker's part from a thread: take the job and record ``outcome``."""

    def work():
        time.sleep(delay)
        taken = Leases(queue.prefix).dequeue(worker_id="thread")
        if outcome == "complete":
            Leases(queue.prefix).complete_job(taken, {"done": True})
        else:
            Leases(queue.prefix).fail_job(taken, "KeyError: 'x'", "Traceback: ...", retry=False)

    thread = threading.Thread(target=work)
    thread.start()
    return thread


def test_result_waits_for_the_outcome_and_returns_it(queue):
    handle = jobs.add.delay(1, 2)
    thread = finish_soon(queue, "complete")
    started = time.monotonic()

    assert handle.result(timeout=10) == {"done": True}

    assert time.monotonic() - started < 2, "woken by the notification, not a slow poll"
    assert handle.status is JobStatus.COMPLETED
    thread.join()


def test_result_of_a_failed_job_raises_with_the_remote_error_and_traceback(queue):
    handle = jobs.add.delay(1, 2)
    finish_soon(queue, "fail").join()

    with pytest.raises(JobFailed) as failed:
        handle.result(timeout=5)

    assert failed.value.error == "KeyError: 'x'"
    assert failed.value.remote_traceback == "Traceback: ..."
    assert "Remote traceback:\nTraceback: ..." in str(failed.value)


def test_result_of_a_cancelled_job_raises_job_cancelled(queue):
    handle = jobs.add.delay(1, 2)

    assert handle.cancel() == "cancelled"

    with pytest.raises(JobCancelled):
        handle.result(timeout=5)
    assert handle.status is JobStatus.CANCELLED


def test_result_raises_timeout_error_when_the_wait_runs_out(queue):
    handle = jobs.add.delay(1, 2)
    started = time.monotonic()

    with pytest.raises(TimeoutError, match="still pending"):
        handle.result(timeout=0.3)

    assert 0.25 < time.monotonic() - started < 2


def test_aresult_waits_in_async_code(queue):
    handle = jobs.add.delay(1, 2)
    finish_soon(queue, "complete")

    assert asyncio.run(handle.aresult(timeout=10)) == {"done": True}


def test_refresh_of_an_expired_job_raises_job_not_found(queue, redis_client):
    handle = jobs.add.delay(1, 2)
    queue.cancel_job(handle.id)
    redis_client.delete(queue.keys.job(handle.id))  # as JOB_TTL would

    with pytest.raises(JobNotFound):
        handle.refresh()
    with pytest.raises(JobNotFound):
        handle.result(timeout=1)


def test_a_handle_can_be_found_again_by_its_id(queue):
    handle = jobs.add.delay(1, 2)

    again = JobHandle.from_id(handle.id)

    assert again.job == handle.refresh().job
    assert asyncio.run(JobHandle.afrom_id(handle.id)).id == handle.id
    with pytest.raises(JobNotFound):
        JobHandle.from_id("0" * 32)


def test_cancel_of_a_finished_job_returns_false(queue):
    handle = jobs.add.delay(1, 2)
    finish_soon(queue, "complete", delay=0).join()

    assert not handle.cancel()
    assert handle.cancel() == "finished"
