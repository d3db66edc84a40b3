"""Enqueueing: what lands in Redis, and what is refused before anything is written."""

import time
from datetime import UTC, datetime, timedelta

import pytest

from django_jobs import JobPriority, JobStatus, NotJSONSerializable
from django_jobs.worker.leases import Leases
from tests.census import assert_census


def test_immediate_job_is_stored_and_pushed_on_its_priority_list(queue, redis_client):
    job = queue.enqueue("mail.send", [1, "two"], {"three": 3.0}, priority=JobPriority.HIGH)

    record = redis_client.hgetall(queue.keys.job(job.id))
    assert record["name"] == "mail.send"
    assert record["args"] == '[1,"two"]'
    assert record["kwargs"] == '{"three":3.0}'
    assert record["status"] == "pending"
    assert record["priority"] == str(JobPriority.HIGH.value)
    assert record["queue"] == "default"
    assert redis_client.lrange(queue.keys.queue("default", JobPriority.HIGH), 0, -1) == [job.id]
    assert_census(queue, redis_client, {job.id: "queue:default:high"})


def test_enqueue_returns_the_stored_job(queue):
    job = queue.enqueue("mail.send", (1,), {"a": [1, 2]})

    assert job == queue.get_job(job.id)
    assert job.status is JobStatus.PENDING
    assert job.priority is JobPriority.NORMAL
    assert job.created_at.tzinfo is UTC
    assert job.max_retries == 3
    assert job.timeout == 300


def test_delayed_job_goes_to_the_scheduled_set_scored_by_due_time(queue, redis_client):
    before = datetime.now(UTC)
    job = queue.enqueue("report.build", delay=timedelta(minutes=5))

    score = redis_client.zscore(queue.keys.scheduled, job.id)
    assert score == pytest.approx((before + timedelta(minutes=5)).timestamp(), abs=1)
    assert job.scheduled_at == queue.get_job(job.id).scheduled_at
    assert_census(queue, redis_client, {job.id: "scheduled"})


def test_job_scheduled_at_an_aware_time_uses_that_time(queue, redis_client):
    due = datetime.now(UTC) + timedelta(days=10)
    job = queue.enqueue("report.build", scheduled_at=due)

    assert redis_client.zscore(queue.keys.scheduled, job.id) == pytest.approx(due.timestamp())
    assert queue.get_job(job.id).scheduled_at == due


def test_job_scheduled_in_the_past_is_ready_at_once(queue, redis_client):
    job = queue.enqueue("report.build", scheduled_at=datetime.now(UTC) - timedelta(seconds=5))

    assert_census(queue, redis_client, {job.id: "queue:default:normal"})


def test_custom_options_are_stored(queue):
    job = queue.enqueue(
        "report.build",
        queue="reports",
        priority="critical",
        max_retries=7,
        timeout=12.5,
        user_id=42,
    )

    stored = queue.get_job(job.id)
    assert stored.queue == "reports"
    assert stored.priority is JobPriority.CRITICAL
    assert stored.max_retries == 7
    assert stored.timeout == 12.5
    assert stored.user_id == 42


def test_enqueue_many_stores_every_job_in_one_call(queue, redis_client):
    jobs = [queue.build_job("bulk.item", [i]) for i in range(50)]
    jobs.append(queue.build_job("bulk.item", [50], delay=60))

    stored = queue.enqueue_many(jobs)

    assert [j.id for j in stored] == [j.id for j in jobs]
    expected = {j.id: "queue:default:normal" for j in jobs[:50]}
    expected[jobs[50].id] = "scheduled"
    assert_census(queue, redis_client, expected)
    assert redis_client.lrange(queue.keys.queue("default", JobPriority.NORMAL), 0, -1) == [
        j.id for j in jobs[:50]
    ]


def test_a_large_mixed_batch_lands_in_order_counted_and_stored_once_when_sent_again(
    queue, redis_client
):
    # More values than a script copies at once (scripts.UNPACK_MAX), over two queues, two
    # priorities and two names: each list gets its jobs in the order given (FIFO).
    options = [
        ("bulk.a", "default", JobPriority.NORMAL),
        ("bulk.b", "emails", JobPriority.HIGH),
        ("bulk.a", "emails", JobPriority.NORMAL),
    ]
    jobs = [
        queue.build_job(name, [i], queue=on, priority=priority)
        for i in range(600)
        for name, on, priority in [options[i % 3]]
    ]

    queue.enqueue_many(jobs)
    queue.enqueue_many(jobs)  # a resend (its first reply lost): nothing twice

    for name, on, priority in options:
        expected = [j.id for j in jobs if (j.name, j.queue, j.priority) == (name, on, priority)]
        assert redis_client.lrange(queue.keys.queue(on, priority), 0, -1) == expected
        assert redis_client.hget(queue.keys.events, f"enqueued|{on}|{name}") == "200"
    assert queue.get_job(jobs[7].id) == jobs[7]
    assert redis_client.llen(queue.keys.wakeup) == 64  # one per ready job, capped


def test_enqueue_wakes_one_idle_worker_per_ready_job(queue, redis_client):
    queue.enqueue("a.job")
    queue.enqueue("a.job")

    assert redis_client.llen(queue.keys.wakeup) == 2


def test_delayed_job_wakes_idle_workers_only_when_due_before_all_others(queue, redis_client):
    tokens = []
    for delay in (60, 120, 30):
        queue.enqueue("a.job", delay=delay)
        tokens.append(redis_client.llen(queue.keys.wakeup))

    assert tokens == [1, 1, 2]


@pytest.mark.parametrize(
    ("args", "kwargs", "named"),
    [
        ([1, {2, 3}], {}, "args[1]"),
        ([], {"when": datetime(2026, 1, 1, tzinfo=UTC)}, "kwargs['when']"),
        ([], {"nested": {"deep": (1, 2)}}, "kwargs['nested']['deep']"),
        ([float("nan")], {}, "args[0]"),
        ([{1: "int key"}], {}, "args[0]"),
        ([object()], {}, "args[0]"),
    ],
)
def test_argument_that_does_not_survive_json_is_named_and_nothing_is_written(
    queue, redis_client, args, kwargs, named
):
    with pytest.raises(NotJSONSerializable, match=named.replace("[", r"\[")):
        queue.enqueue("a.job", args, kwargs)

    assert list(redis_client.scan_iter(match=f"{queue.prefix}*")) == []


def test_model_instance_argument_suggests_passing_its_pk(queue, db):
    from django.contrib.auth.models import User

    with pytest.raises(NotJSONSerializable, match=r"args\[0\].*instance\.pk"):
        queue.enqueue("a.job", [User(pk=1, username="ada")])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"priority": "urgent"}, "Unknown priority 'urgent'"),
        ({"priority": 9}, "Unknown priority 9"),
        ({"queue": "nope"}, "Unknown queue 'nope'"),
        ({"delay": -1}, "must not be negative"),
        ({"scheduled_at": datetime(2030, 1, 1)}, "has no time zone"),
        ({"delay": 5, "scheduled_at": datetime(2030, 1, 1, tzinfo=UTC)}, "either delay or"),
        ({"max_retries": -1}, "max_retries"),
        ({"timeout": 0}, "timeout must be positive"),
        ({"retry_backoff_base": 0}, "retry_backoff_base must be a positive"),
        ({"retry_backoff_max": float("nan")}, "retry_backoff_max must be a number"),
    ],
)
def test_bad_option_raises_value_error_and_nothing_is_written(
    queue, redis_client, options, message
):
    with pytest.raises(ValueError, match=message):
        queue.enqueue("a.job", **options)

    assert list(redis_client.scan_iter(match=f"{queue.prefix}*")) == []


def test_empty_job_name_is_refused(queue):
    with pytest.raises(ValueError, match="non-empty string"):
        queue.enqueue("")


def test_pending_and_scheduled_jobs_never_expire(queue, redis_client):
    ready = queue.enqueue("a.job")
    later = queue.enqueue("a.job", delay=timedelta(days=10))

    assert redis_client.ttl(queue.keys.job(ready.id)) == -1
    assert redis_client.ttl(queue.keys.job(later.id)) == -1


def test_meta_is_kept_with_the_job_and_must_be_json(queue, redis_client):
    job = queue.enqueue("a.job", meta={"priority": -7, "origin": ["x"]})

    assert queue.get_job(job.id).meta == {"priority": -7, "origin": ["x"]}
    with pytest.raises(NotJSONSerializable, match=r"meta\['when'\]"):
        queue.enqueue("a.job", meta={"when": datetime(2030, 1, 1, tzinfo=UTC)})
    with pytest.raises(TypeError, match="meta must be a dict"):
        queue.enqueue("a.job", meta=[1])
    assert_census(queue, redis_client, {job.id: "queue:default:normal"})


def test_a_job_with_its_own_backoff_is_retried_after_it(queue, redis_client):
    queue.enqueue("a.job", retry_backoff_base=5, retry_backoff_max=15)
    job = Leases(queue.prefix).dequeue(worker_id="w1")
    assert (job.retry_backoff_base, job.retry_backoff_max) == (5, 15)

    dues = []
    for _ in range(2):
        failed_at = time.time()
        assert Leases(queue.prefix).fail_job(job, "ValueError: boom") is JobStatus.RETRYING
        dues.append(redis_client.zscore(queue.keys.retrying, job.id) - failed_at)
        redis_client.zadd(queue.keys.retrying, {job.id: 0})  # due now
        job = Leases(queue.prefix).dequeue(worker_id="w1")

    # min(5 * 2**n, 15) for the n-th retry, not the settings' min(60 * 2**n, 3600).
    assert dues == [pytest.approx(10, abs=1), pytest.approx(15, abs=1)]
