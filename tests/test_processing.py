"""Taking jobs, and the outcomes a worker records: completion, retry, dead letter."""

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from django_jobs import JobPriority, JobStatus
from django_jobs.worker.leases import Leases
from tests.census import assert_census


def drain(queue, **kwargs):
    jobs = []
    while (job := Leases(queue.prefix).dequeue(**kwargs)) is not None:
        jobs.append(job)
    return jobs


def test_dequeue_from_empty_queues_returns_none(queue):
    assert Leases(queue.prefix).dequeue(worker_id="w1") is None


def test_dequeue_takes_critical_then_high_then_normal_then_low(queue):
    order = [JobPriority.LOW, JobPriority.NORMAL, JobPriority.CRITICAL, JobPriority.HIGH]
    for priority in order:
        queue.enqueue("a.job", [priority.name], priority=priority)

    taken = [job.args[0] for job in drain(queue, worker_id="w1")]

    assert taken == ["CRITICAL", "HIGH", "NORMAL", "LOW"]


def test_jobs_of_one_priority_come_out_first_in_first_out(queue):
    for i in range(20):
        queue.enqueue("a.job", [i])

    assert [job.args[0] for job in drain(queue)] == list(range(20))


def test_priority_is_strict_across_the_served_queues(queue):
    queue.enqueue("a.job", ["default-low"], priority="low")
    queue.enqueue("a.job", ["emails-normal"], queue="emails")
    queue.enqueue("a.job", ["reports-critical"], queue="reports", priority="critical")
    queue.enqueue("a.job", ["default-normal"])

    taken = [job.args[0] for job in drain(queue, queues=["default", "emails", "reports"])]

    assert taken == ["reports-critical", "default-normal", "emails-normal", "default-low"]


def test_a_worker_only_takes_jobs_of_the_queues_it_serves(queue):
    other = queue.enqueue("a.job", queue="reports", priority="critical")
    mine = queue.enqueue("a.job", queue="emails")

    assert [job.id for job in drain(queue, queues=["emails"])] == [mine.id]
    assert queue.get_job(other.id).status is JobStatus.PENDING


def test_dequeued_job_is_leased_to_the_worker(queue, redis_client):
    enqueued = queue.enqueue("a.job", [1])
    before = time.time()

    job = Leases(queue.prefix).dequeue(worker_id="worker-1", lease=30)

    assert job.id == enqueued.id
    assert job.status is JobStatus.RUNNING
    assert job.worker_id == "worker-1"
    assert job.lease_token
    assert job.started_at >= job.created_at
    deadline = redis_client.zscore(queue.keys.processing, job.id)
    assert before + 30 <= deadline <= time.time() + 30
    assert_census(queue, redis_client, {job.id: "processing"})


def test_concurrent_workers_never_take_the_same_job(queue):
    ids = {queue.enqueue("a.job", [i]).id for i in range(200)}

    with ThreadPoolExecutor(max_workers=4) as pool:
        batches = list(pool.map(lambda w: drain(queue, worker_id=f"w{w}"), range(4)))

    taken = [job.id for batch in batches for job in batch]
    assert len(taken) == len(set(taken)) == 200
    assert set(taken) == ids


def test_scheduled_job_is_never_promoted_early(queue, redis_client):
    job = queue.enqueue("a.job", delay=0.5)

    assert Leases(queue.prefix).dequeue() is None
    assert Leases(queue.prefix).promote_due() == 0
    assert_census(queue, redis_client, {job.id: "scheduled"})

    time.sleep(0.6)
    taken = Leases(queue.prefix).dequeue()
    assert taken.id == job.id
    assert taken.started_at >= taken.scheduled_at


def test_a_claim_that_takes_nothing_says_when_the_first_delayed_or_retrying_job_is_due(
    queue, redis_client
):
    leases = Leases(queue.prefix)
    assert leases.claim().next_due is None  # nothing waits

    later = queue.enqueue("a.job", delay=60)
    assert leases.claim().next_due == pytest.approx(later.scheduled_at.timestamp(), abs=1e-6)

    queue.enqueue("a.job")
    failed = leases.dequeue(worker_id="w1")
    leases.fail_job(failed, "ValueError: boom")  # retrying, due in about 2 minutes
    assert leases.claim().next_due == pytest.approx(later.scheduled_at.timestamp(), abs=1e-6)

    sooner = queue.enqueue("a.job", delay=0.2)
    soonest = queue.enqueue("a.job", delay=0.3)
    time.sleep(0.25)  # ``sooner`` is due: the claim takes it, and says nothing of the rest
    claim = leases.claim()
    assert claim.job.id == sooner.id
    assert claim.next_due is None
    # Promoted meanwhile, the next one leaves a claim that says when the one after it is due.
    time.sleep(0.1)
    assert leases.claim().job.id == soonest.id
    assert leases.claim().next_due == pytest.approx(later.scheduled_at.timestamp(), abs=1e-6)
    assert_census(
        queue,
        redis_client,
        {
            later.id: "scheduled",
            failed.id: "retrying",
            sooner.id: "processing",
            soonest.id: "processing",
        },
    )


def test_a_claim_that_promotes_jobs_of_other_queues_still_says_when_its_next_job_is_due(
    queue, redis_client
):
    """A claim promotes the due jobs of every queue, then takes from its own; after moving
    some, it reads the first of the delayed jobs left to say when it should look again."""
    elsewhere = queue.enqueue("a.job", queue="reports", delay=0.1)
    mine = queue.enqueue("a.job", queue="emails", delay=30)
    time.sleep(0.15)  # ``elsewhere`` is due, ``mine`` is not

    claim = Leases(queue.prefix).claim(["emails"])

    assert claim.job is None
    assert claim.next_due == pytest.approx(mine.scheduled_at.timestamp(), abs=1e-6)
    assert_census(queue, redis_client, {elsewhere.id: "queue:reports:normal", mine.id: "scheduled"})


def test_get_job_returns_none_for_an_unknown_id(queue):
    assert queue.get_job("0" * 32) is None


def test_completed_job_keeps_its_result_and_expires_later(queue, redis_client):
    queue.enqueue("a.job")
    job = Leases(queue.prefix).dequeue(worker_id="w1")

    result = {"sent": 3, "to": ["ann@example.com", "bob@example.com"]}  # a key of its own
    assert Leases(queue.prefix).complete_job(job, result) is True

    stored = queue.get_job(job.id)
    assert stored.status is JobStatus.COMPLETED
    assert stored.result == result
    assert stored.finished_at >= stored.started_at
    assert stored.lease_token is None
    assert 0 < redis_client.ttl(queue.keys.result(job.id)) <= 24 * 3600
    assert 24 * 3600 < redis_client.ttl(queue.keys.job(job.id)) <= 7 * 24 * 3600
    assert_census(queue, redis_client, {job.id: "completed"})


def test_ttls_follow_the_settings(jobs_settings, queue, redis_client):
    jobs_settings.DJANGO_JOBS = {**jobs_settings.DJANGO_JOBS, "JOB_TTL": 500, "RESULT_TTL": 50}
    queue.enqueue("a.job")
    job = Leases(queue.prefix).dequeue()
    Leases(queue.prefix).complete_job(job, "long enough for a key of its own: " * 2)

    assert 490 < redis_client.ttl(queue.keys.job(job.id)) <= 500
    assert 40 < redis_client.ttl(queue.keys.result(job.id)) <= 50


def test_a_result_that_is_not_json_is_refused_before_anything_changes(queue):
    queue.enqueue("a.job")
    job = Leases(queue.prefix).dequeue()

    with pytest.raises(TypeError, match="the result"):
        Leases(queue.prefix).complete_job(job, datetime.now(UTC))

    assert queue.get_job(job.id).status is JobStatus.RUNNING


def test_failed_job_is_retried_after_backoff(queue, redis_client):
    queue.enqueue("a.job")
    job = Leases(queue.prefix).dequeue(worker_id="w1")
    failed_at = time.time()

    assert (
        Leases(queue.prefix).fail_job(job, "ValueError: boom", "Traceback ...")
        is JobStatus.RETRYING
    )

    stored = queue.get_job(job.id)
    assert stored.status is JobStatus.RETRYING
    assert stored.retry_count == 1
    assert stored.error == "ValueError: boom"
    assert stored.traceback == "Traceback ..."
    due = redis_client.zscore(queue.keys.retrying, job.id)
    assert due == pytest.approx(failed_at + 120, abs=1)
    assert stored.scheduled_at.timestamp() == pytest.approx(due)
    assert_census(queue, redis_client, {job.id: "retrying"})


@pytest.mark.parametrize(
    ("retries_so_far", "backoff"),
    [(0, 120), (1, 240), (2, 480), (3, 960), (4, 1920), (5, 3600), (9, 3600)],
)
def test_backoff_doubles_per_retry_and_is_capped_at_an_hour(
    queue, redis_client, retries_so_far, backoff
):
    job = queue.enqueue("a.job", max_retries=20)
    # Fast-forward the job's history to its n-th retry.
    redis_client.hset(queue.keys.job(job.id), "retry_count", retries_so_far)
    job = Leases(queue.prefix).dequeue()
    failed_at = time.time()

    Leases(queue.prefix).fail_job(job, "boom")

    due = redis_client.zscore(queue.keys.retrying, job.id)
    assert due - failed_at == pytest.approx(backoff, abs=1)


def fail_attempts(queue, attempts):
    """Lease the job ``attempts`` times (waiting out its backoff), by workers w0, w1, ...,
    each failing it with "boom <n>": the outcome of each failure."""
    outcomes = []
    for attempt in range(attempts):
        job = None
        while job is None:
            job = Leases(queue.prefix).dequeue(worker_id=f"w{attempt}")
        outcomes.append(Leases(queue.prefix).fail_job(job, f"boom {attempt}", f"tb {attempt}"))
    return outcomes


def test_failed_job_goes_to_dead_letter_after_max_retries(jobs_settings, queue, redis_client):
    jobs_settings.DJANGO_JOBS = {
        **jobs_settings.DJANGO_JOBS,
        "RETRY_BACKOFF_BASE": 0.01,
        "RETRY_BACKOFF_MAX": 0.05,
    }
    enqueued = queue.enqueue("a.job", max_retries=2)
    outcomes = fail_attempts(queue, 3)

    assert outcomes == [JobStatus.RETRYING, JobStatus.RETRYING, JobStatus.FAILED]
    stored = queue.get_job(enqueued.id)
    assert stored.status is JobStatus.FAILED
    assert stored.retry_count == 2
    assert stored.error == "boom 2"
    assert [(e["attempt"], e["error"], e["traceback"], e["worker_id"]) for e in stored.errors] == [
        (1, "boom 0", "tb 0", "w0"),
        (2, "boom 1", "tb 1", "w1"),
        (3, "boom 2", "tb 2", "w2"),
    ]
    assert redis_client.ttl(queue.keys.job(enqueued.id)) == -1, "dead jobs are kept"
    assert_census(queue, redis_client, {enqueued.id: "dead"})


def test_a_record_without_max_retries_is_retried_as_often_as_the_default(
    jobs_settings, queue, redis_client
):
    """``max_retries=3`` is left out of the record: the fail script reads it as 3."""
    jobs_settings.DJANGO_JOBS = {
        **jobs_settings.DJANGO_JOBS,
        "RETRY_BACKOFF_BASE": 0.01,
        "RETRY_BACKOFF_MAX": 0.05,
    }
    enqueued = queue.enqueue("a.job", max_retries=3)
    assert not redis_client.hexists(queue.keys.job(enqueued.id), "max_retries")
    outcomes = fail_attempts(queue, 4)

    assert outcomes == [JobStatus.RETRYING] * 3 + [JobStatus.FAILED]
    assert queue.get_job(enqueued.id).retry_count == 3


def test_a_failure_that_must_not_be_retried_goes_straight_to_dead_letter(queue, redis_client):
    queue.enqueue("a.job", max_retries=5)
    job = Leases(queue.prefix).dequeue()

    assert Leases(queue.prefix).fail_job(job, "unknown job name", retry=False) is JobStatus.FAILED
    assert_census(queue, redis_client, {job.id: "dead"})


def test_job_with_no_retries_fails_at_once(queue, redis_client):
    queue.enqueue("a.job", max_retries=0)
    job = Leases(queue.prefix).dequeue()

    assert Leases(queue.prefix).fail_job(job, "boom") is JobStatus.FAILED
    assert_census(queue, redis_client, {job.id: "dead"})


def test_completing_and_claiming_the_next_job_is_one_call(queue, redis_client):
    first = queue.enqueue("a.job", [1])
    second = queue.enqueue("a.job", [2], priority="high")
    job = Leases(queue.prefix).dequeue(worker_id="w1")
    assert job.id == second.id

    acked, claim = Leases(queue.prefix).complete_and_claim(job, {"n": 2}, worker_id="w1")

    assert acked is True
    assert claim.job.id == first.id
    assert claim.job.status is JobStatus.RUNNING
    assert queue.get_job(second.id).result == {"n": 2}
    assert_census(queue, redis_client, {second.id: "completed", first.id: "processing"})

    acked, claim = Leases(queue.prefix).complete_and_claim(claim.job, None, worker_id="w1")
    assert acked is True
    assert claim.job is None
    assert_census(queue, redis_client, {second.id: "completed", first.id: "completed"})


def test_a_stale_completion_is_refused_but_the_claim_still_happens(queue):
    queue.enqueue("a.job")
    stale = Leases(queue.prefix).dequeue(lease=0.01)
    time.sleep(0.05)
    Leases(queue.prefix).recover_expired()

    acked, claim = Leases(queue.prefix).complete_and_claim(stale, "late", worker_id="w2")

    assert acked is False
    assert claim.job.id == stale.id
    assert claim.job.worker_id == "w2"


def test_recovery_drops_completions_whose_records_expired_from_the_index(queue, redis_client):
    queue.enqueue("a.job")
    job = Leases(queue.prefix).dequeue()
    Leases(queue.prefix).complete_job(job, 1)
    redis_client.zadd(queue.keys.completed, {"long-gone": time.time() - 8 * 24 * 3600})

    Leases(queue.prefix).recover_expired()

    assert redis_client.zrange(queue.keys.completed, 0, -1) == [job.id]
