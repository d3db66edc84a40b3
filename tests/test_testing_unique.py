"""Unique jobs in the testing modes hold their keys as Redis holds them.

The scenarios of the first part run twice, with Redis (the worker's scripts, through
``drain()`` in "redis" mode) and in capture mode (the in-memory store), and assert the same
outcomes, so the store's mirror of the Lua rules (django_jobs/testing/unique.py) cannot drift
from them. The others need the store's clock (``unique_for`` windows) or immediate mode.
"""

from datetime import timedelta

import pytest
from django.db import transaction

from django_jobs import JobNotFound, JobQueue, JobStatus, job
from django_jobs.testing import assert_enqueued, drain, enqueued, memory_store
from django_jobs.testing.unique import UniqueKeys

pytest_plugins = ["django_jobs.testing.pytest"]

# What the jobs saw while they ran: (job, whether the .delay() it made created a job).
seen: list[tuple[str, bool | None]] = []
# The runs of each job, by its argument.
runs: list[str] = []


@job(unique=True)
def import_customer(customer_id: int) -> int:
    runs.append(f"import {customer_id}")
    return customer_id


@job(unique=True, max_retries=1)
def failing_import(customer_id: int) -> None:
    runs.append(f"failing {customer_id}")
    raise ConnectionError("the partner is down")


@job(unique=True)
def import_and_ask_again(customer_id: int) -> None:
    """Asks for itself while it runs: an "until finished" key is still held."""
    again = import_and_ask_again.delay(customer_id)
    seen.append(("finished", again.created))


@job(unique="until_started", unique_key="refresh:{account}")
def refresh(account: str, ask_again: bool = False) -> None:
    """With ``ask_again``, enqueues itself once while it runs: its key was freed at the start."""
    runs.append(f"refresh {account}")
    if ask_again:
        seen.append(("started", refresh.delay(account).created))


@job(unique_for=60)
def debounced(topic: str) -> None:
    runs.append(f"debounced {topic}")


@job(unique=True, unique_for=30)
def bounded(n: int) -> None:
    runs.append(f"bounded {n}")


@job(rate_limit="1/h", concurrency=1)
def limited(n: int) -> int:
    runs.append(f"limited {n}")
    return n


@pytest.fixture(autouse=True)
def fresh():
    seen.clear()
    runs.clear()


@pytest.fixture(params=["redis", "capture"])
def mode(request):
    """The same test with Redis under the test's prefix, and in capture mode (Redis out of
    reach): ``drain()`` runs the jobs in this process either way."""
    if request.param == "redis":
        request.getfixturevalue("queue")
    else:
        request.getfixturevalue("no_redis")
        request.getfixturevalue("jobs_capture")
    return request.param


def status(handle):
    return JobQueue().get_job(handle.id).status


# -- the same on Redis and in capture mode ------------------------------------------------------


def test_a_second_unique_delay_returns_the_holder(mode):
    first = import_customer.delay(7)
    second = import_customer.delay(7)
    other = import_customer.delay(8)

    assert (first.created, second.created, other.created) == (True, False, True)
    assert second.id == first.id
    assert (second.job.args, second.status) == ([7], JobStatus.PENDING)
    assert other.id != first.id
    assert drain() == 2
    assert sorted(runs) == ["import 7", "import 8"]


def test_the_queue_api_returns_the_holder_in_place_of_a_duplicate(mode):
    queue = JobQueue()
    built = [queue.build_job(import_customer.name, [7]) for _ in range(2)]
    built += [queue.build_job(import_customer.name, [8])]
    first, second, other = queue.enqueue_many(built)

    assert (first.id, second.id, other.id) == (built[0].id, built[0].id, built[2].id)
    assert queue.enqueue(import_customer.name, [8]).id == other.id
    assert drain() == 2


def test_an_until_finished_key_is_held_while_its_job_runs_and_freed_when_it_completes(mode):
    first = import_and_ask_again.delay(1)

    assert drain() == 1
    assert seen == [("finished", False)], "the running job held its key"
    assert status(first) is JobStatus.COMPLETED
    again = import_and_ask_again.delay(1)
    assert again.created is True
    assert again.id != first.id


def test_an_until_finished_key_is_held_through_retries_and_freed_when_the_job_goes_dead(mode):
    first = failing_import.delay(3)

    assert drain() == 1
    assert status(first) is JobStatus.RETRYING
    assert failing_import.delay(3).id == first.id, "waiting for its retry: still held"
    assert drain(until=timedelta(hours=1)) == 1
    assert status(first) is JobStatus.FAILED
    assert failing_import.delay(3).created is True


def test_an_until_finished_key_is_freed_when_its_job_is_cancelled(mode):
    first = import_customer.delay(7)

    first.cancel()

    assert status(first) is JobStatus.CANCELLED
    assert import_customer.delay(7).created is True


def test_an_until_started_key_is_freed_when_drain_starts_its_job(mode):
    first = refresh.delay("acme", ask_again=True)
    assert refresh.delay("acme").id == first.id, "the key is the account alone"

    assert drain() == 2
    assert seen == [("started", True)]
    assert runs == ["refresh acme", "refresh acme"]


def test_a_delayed_unique_job_holds_its_key_until_it_ran(mode):
    first = import_customer.using(delay=600).delay(7)
    assert import_customer.delay(7).id == first.id

    assert drain(until=timedelta(hours=1)) == 1
    assert import_customer.delay(7).created is True


@pytest.mark.django_db
def test_a_duplicate_waiting_for_the_commit_is_dropped_at_the_commit(
    mode, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        first = import_customer.delay(7)
        second = import_customer.delay(7)
        assert first.created is second.created is None

    assert first.refresh().status is JobStatus.PENDING
    with pytest.raises(JobNotFound):
        second.refresh()
    assert drain() == 1


# -- capture mode: the fake clock, and what was enqueued ----------------------------------------


def test_capture_mode_returns_the_holder_for_a_second_unique_delay(no_redis, jobs_capture):
    first = import_customer.delay(7)
    second = import_customer.delay(7)

    assert second.created is False
    assert second.id == first.id
    (stored,) = assert_enqueued(import_customer, args=[7], count=1)
    assert stored.id == first.id
    assert len(jobs_capture.records()) == 1, "a refused duplicate is not stored"


def test_a_unique_for_window_holds_by_the_fake_clock_after_the_job_ended(no_redis, jobs_capture):
    first = debounced.delay("news")
    assert drain() == 1
    assert debounced.delay("news").id == first.id, "finished, but inside its 60 s window"

    jobs_capture.advance(59)
    assert debounced.delay("news").id == first.id
    jobs_capture.advance(1)
    again = debounced.delay("news")

    assert again.created is True
    assert [j.id for j in enqueued(debounced)] == [first.id, again.id]


def test_drain_until_moves_the_clock_past_a_window(no_redis, jobs_capture):
    debounced.delay("news")
    drain(until=timedelta(minutes=1))

    assert debounced.delay("news").created is True
    assert_enqueued(debounced, count=2)


def test_unique_for_bounds_an_until_finished_key(no_redis, jobs_capture):
    first = bounded.delay(1)
    jobs_capture.advance(29)
    assert bounded.delay(1).id == first.id

    jobs_capture.advance(1)
    second = bounded.delay(1)

    assert second.created is True
    assert drain() == 2, "both were pending: the window ended the first one's hold"


def test_clear_frees_every_key(no_redis, jobs_capture):
    debounced.delay("news")
    import_customer.delay(7)

    jobs_capture.clear()

    assert debounced.delay("news").created is True
    assert import_customer.delay(7).created is True


@pytest.mark.parametrize("kind", ["until finished", "window"])
def test_a_key_whose_holder_is_gone_is_free_unless_its_window_runs(no_redis, kind):
    keys = UniqueKeys({}, now=lambda: 0.0)  # the holder's record is never there
    name = import_customer.name if kind == "until finished" else debounced.name
    holder, other = (JobQueue().build_job(name, [7]) for _ in range(2))
    assert keys.take("{p}", holder, now=1000.0) is None

    in_window = keys.take("{p}", other, now=1059.0)
    assert in_window == (None if kind == "until finished" else holder.id)
    assert keys.take("{p}", other, now=1060.0) is None


def test_limits_are_not_enforced_in_the_testing_modes(no_redis, jobs_capture):
    for n in range(3):
        limited.delay(n)

    assert drain() == 3, "a rate of 1/h and a concurrency of 1 hold nothing back"
    assert runs == ["limited 0", "limited 1", "limited 2"]


# -- immediate mode -----------------------------------------------------------------------------


def test_immediate_mode_frees_an_until_finished_key_when_delay_returns(no_redis, jobs_immediate):
    first = import_customer.delay(7)
    second = import_customer.delay(7)

    assert first.status is second.status is JobStatus.COMPLETED
    assert second.created is True
    assert second.id != first.id
    assert runs == ["import 7", "import 7"]
    assert_enqueued(import_customer, count=2)


def test_immediate_mode_frees_an_until_started_key_when_delay_returns(no_redis, jobs_immediate):
    refresh.delay("acme", ask_again=True)

    assert seen == [("started", True)]
    assert refresh.delay("acme").created is True
    assert runs == ["refresh acme"] * 3


def test_immediate_mode_holds_a_window_by_the_stores_clock(no_redis, jobs_immediate):
    first = debounced.delay("news")
    second = debounced.delay("news")

    assert first.status is JobStatus.COMPLETED
    assert (second.created, second.id) == (False, first.id)
    assert runs == ["debounced news"], "the second .delay() ran nothing"
    assert_enqueued(debounced, count=1)

    memory_store().advance(60)
    assert debounced.delay("news").created is True
    assert runs == ["debounced news"] * 2


def test_immediate_mode_a_job_asking_for_itself_gets_itself_back(no_redis, jobs_immediate):
    handle = import_and_ask_again.delay(1)

    assert seen == [("finished", False)]
    assert handle.status is JobStatus.COMPLETED
    assert_enqueued(import_and_ask_again, count=1)


def test_immediate_mode_duplicates_within_one_enqueue_many_resolve_to_the_first(
    no_redis, jobs_immediate
):
    queue = JobQueue()
    built = [queue.build_job(import_customer.name, [7]) for _ in range(2)]

    first, second = queue.enqueue_many(built)

    assert first.id == second.id == built[0].id
    assert first.status is JobStatus.COMPLETED
    assert runs == ["import 7"]
    assert_enqueued(import_customer, count=1)
