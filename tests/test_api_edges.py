"""Small edges of the public API: lists of ids, what ``cancel()`` did, ``user_id``'s type, and
``timedelta`` wherever seconds are taken."""

import asyncio
import uuid
from datetime import timedelta

import pytest

from django_jobs import JobFailed, JobQueue, JobStatus, job, registry
from django_jobs.handle import Cancellation
from django_jobs.job import Job, JobPriority
from django_jobs.worker.leases import Leases
from tests.census import assert_census
from tests.testapp import jobs


def dead_job(queue):
    """A job in the dead-letter queue."""
    queue.enqueue("a.job", max_retries=0)
    claimed = Leases(queue.prefix).dequeue()
    Leases(queue.prefix).fail_job(claimed, "boom")
    assert queue.get_job(claimed.id).status is JobStatus.FAILED
    return claimed.id


# -- lists of ids ---------------------------------------------------------------------------------


def test_requeue_dead_of_one_id_given_alone_is_refused_not_read_letter_by_letter(
    queue, redis_client
):
    job_id = dead_job(queue)

    with pytest.raises(TypeError) as refused:
        queue.requeue_dead(job_id)
    assert str(refused.value) == (
        f"requeue_dead() takes a list of job ids, not the single id {job_id!r}: pass [{job_id!r}]."
    )
    with pytest.raises(TypeError, match="takes a list of job ids, not the single id"):
        asyncio.run(queue.arequeue_dead(job_id))
    with pytest.raises(TypeError, match=r"requeue_dead\(\) takes job ids as strings, not 7\."):
        queue.requeue_dead([7])
    assert_census(queue, redis_client, {job_id: "dead"})

    assert queue.requeue_dead(iter([job_id])) == [job_id]
    assert_census(queue, redis_client, {job_id: "queue:default:normal"})


def test_methods_taking_one_id_or_a_list_of_jobs_refuse_the_other_shape(queue):
    built = queue.build_job("a.job")

    with pytest.raises(TypeError, match=r"enqueue_many\(\) takes a list of jobs, not Job\."):
        queue.enqueue_many(built)
    with pytest.raises(TypeError, match=r"takes jobs made by build_job\(\), not str\."):
        queue.enqueue_many(["a.job"])
    with pytest.raises(TypeError, match=r"get_job\(\) takes job ids as strings, not \['x'\]\."):
        queue.get_job(["x"])
    with pytest.raises(TypeError, match=r"cancel_job\(\) takes job ids as strings"):
        queue.cancel_job(None)
    with pytest.raises(TypeError, match=r"wait_for\(\) takes job ids as strings"):
        queue.wait_for(b"x", timeout=0.1)
    assert queue.stats()["states"]["pending"] == 0


# -- what cancel() did ----------------------------------------------------------------------------


def test_cancel_tells_cancelled_now_from_cancel_requested_and_stays_usable_as_a_bool(queue):
    leases = Leases(queue.prefix)
    pending = jobs.add.delay(1, 2)

    assert pending.cancel() is Cancellation.CANCELLED
    assert queue.get_job(pending.id).status is JobStatus.CANCELLED
    running = jobs.add.delay(1, 2)
    assert leases.dequeue(lease=30).id == running.id
    assert running.cancel() is Cancellation.REQUESTED
    assert queue.get_job(running.id).status is JobStatus.RUNNING
    finished = jobs.add.delay(1, 2)
    leases.complete_job(leases.dequeue(lease=30), 3)
    assert finished.cancel() is Cancellation.FINISHED
    gone = JobQueue(prefix=queue.prefix[:-1] + "-elsewhere}")
    assert Cancellation.of(gone.cancel_job(pending.id)) is Cancellation.MISSING

    # Usable as before, when cancel() returned a bool; and its values are strings.
    assert [bool(c) for c in Cancellation] == [True, True, False, False]
    assert (running.cancel() == "requested", isinstance(running.cancel(), str)) == (True, True)
    assert asyncio.run(jobs.add.delay(1, 2).acancel()) == "cancelled"


# -- user_id --------------------------------------------------------------------------------------


@pytest.mark.parametrize("user_id", [42, "42", "alice", -3, "ünï"])
def test_user_id_comes_back_as_it_was_given(queue, user_id):
    enqueued = queue.enqueue("a.job", user_id=user_id)

    for found in (
        queue.get_job(enqueued.id),
        queue.list_jobs("pending")[0],
        queue.jobs_for_user(user_id)[0],
        Job.from_json(queue.get_job(enqueued.id).to_json()),
    ):
        assert found.user_id == user_id
        assert type(found.user_id) is type(user_id)
    assert jobs.add.using(user_id=user_id).delay(1, 2).refresh().job.user_id == user_id


def test_a_user_id_stored_by_an_older_version_is_read_as_text(queue, redis_client):
    old, number = queue.enqueue("a.job"), queue.enqueue("a.job")
    redis_client.hset(queue.keys.job(old.id), "user_id", "alice")
    redis_client.hset(queue.keys.job(number.id), "user_id", "17")

    assert queue.get_job(old.id).user_id == "alice"
    assert queue.get_job(number.id).user_id == 17


@pytest.mark.parametrize("bad", [True, 1.5, "", uuid.UUID(int=1), ["a"]])
def test_a_user_id_that_could_not_come_back_as_given_is_refused(queue, bad):
    with pytest.raises(TypeError) as refused:
        queue.enqueue("a.job", user_id=bad)

    assert str(refused.value) == (
        f"user_id must be a non-empty string or an integer, not {bad!r}; for another kind of "
        "key (a UUID, say) pass str(key)."
    )


# -- timedelta wherever seconds are taken ---------------------------------------------------------


def test_timedelta_options_are_stored_as_seconds_and_read_back(queue, redis_client):
    enqueued = queue.enqueue(
        "a.job",
        timeout=timedelta(minutes=5),
        retry_backoff_base=timedelta(milliseconds=250),
        retry_backoff_max=timedelta(hours=1),
        delay=timedelta(minutes=1),
    )

    stored = queue.get_job(enqueued.id)
    assert (stored.timeout, stored.retry_backoff_base, stored.retry_backoff_max) == (
        300,
        0.25,
        3600,
    )
    record = redis_client.hgetall(queue.keys.job(enqueued.id))
    # A whole number of seconds is written without ".0"; five minutes is the default timeout,
    # which the record leaves out.
    assert record["retry_backoff_max"] == "3600"
    assert "timeout" not in record
    assert stored.status is JobStatus.PENDING
    assert_census(queue, redis_client, {enqueued.id: "scheduled"})


@pytest.fixture
def scratch_registry():
    """Forget the jobs a test registers."""
    before = set(registry.names())
    yield registry
    for name in set(registry.names()) - before:
        registry.unregister(name)


def test_timedelta_timeouts_of_a_job_and_of_one_call(queue, scratch_registry):
    @job(name="tests.slow", timeout=timedelta(seconds=90))
    def slow():
        return None

    assert slow.timeout == 90
    assert queue.get_job(slow.delay().id).timeout == 90
    once = slow.using(timeout=timedelta(seconds=1.5)).delay()
    assert queue.get_job(once.id).timeout == 1.5
    with pytest.raises(ValueError, match=r"timeout must be positive, not datetime\.timedelta\(0\)"):
        slow.using(timeout=timedelta(0)).delay()
    with pytest.raises(ValueError, match="retry_backoff_max must be a positive number"):
        queue.enqueue("a.job", retry_backoff_max=timedelta(seconds=-1))


def test_a_worker_runs_jobs_whose_timeout_and_backoff_were_timedeltas(workers, queue):
    workers.start("--concurrency", "1")

    done = jobs.add.using(timeout=timedelta(seconds=20)).delay(2, 3)
    stopped = jobs.sleep.using(timeout=timedelta(seconds=0.5), max_retries=0).delay(30)
    retried = queue.enqueue(
        "tests.testapp.jobs.fail",
        ["again"],
        max_retries=1,
        retry_backoff_base=timedelta(milliseconds=50),
        retry_backoff_max=timedelta(milliseconds=100),
    )

    assert done.result(timeout=20) == 5
    with pytest.raises(JobFailed, match=r"JobTimeout: .* longer than its timeout of 0\.5s"):
        stopped.result(timeout=20)
    failed = queue.wait_for(retried.id, timeout=20)
    assert (failed.status, failed.retry_count, len(failed.errors)) == (JobStatus.FAILED, 1, 2)


def test_jobs_of_user_id_zero_are_indexed_like_any_other(queue):
    handle = queue.enqueue("a.job", user_id=0)

    assert [job.id for job in queue.jobs_for_user(0)] == [handle.id]


def test_enqueue_by_name_of_a_registered_job_takes_its_job_options(queue):
    job = queue.enqueue("tests.report", ["x"])
    chosen = queue.enqueue("tests.report", ["x"], queue="default", priority="low", max_retries=0)

    assert (job.queue, job.priority, job.max_retries, job.timeout) == (
        "reports",
        JobPriority.HIGH,
        1,
        30,
    )
    assert (chosen.queue, chosen.priority, chosen.max_retries) == (
        "default",
        JobPriority.LOW,
        0,
    )
