"""enqueue_many() in chunks (django_jobs.bulk): every job stored once, in order, across chunk
boundaries and resends; a chunk that fails after others were stored says which were."""

import asyncio
import dataclasses
import gc

import pytest

from django_jobs import JobPriority, bulk
from django_jobs.exceptions import RedisUnavailable, StoreError
from django_jobs.flow import Flow
from tests.census import assert_census


@pytest.fixture
def chunk_of_three(monkeypatch):
    monkeypatch.setattr(bulk, "CHUNK", 3)


@pytest.mark.parametrize("count", [1, 2, 3, 4, 6, 7])
def test_jobs_over_chunk_boundaries_land_in_order_once_and_counted(
    queue, redis_client, chunk_of_three, count
):
    jobs = [queue.build_job("bulk.item", [i]) for i in range(count)]

    stored = queue.enqueue_many(jobs)
    queue.enqueue_many(jobs)  # a resend (a reply lost): nothing twice

    assert [job.id for job in stored] == [job.id for job in jobs]
    assert redis_client.lrange(queue.keys.queue("default", JobPriority.NORMAL), 0, -1) == [
        job.id for job in jobs
    ]
    assert_census(queue, redis_client, dict.fromkeys((j.id for j in jobs), "queue:default:normal"))
    assert redis_client.hget(queue.keys.events, "enqueued|default|bulk.item") == str(count)
    assert queue.get_job(jobs[-1].id) == jobs[-1]


def test_a_job_given_twice_in_one_call_is_stored_once(queue, redis_client):
    job = queue.build_job("bulk.item", [1])
    other = queue.build_job("bulk.item", [2])

    queue.enqueue_many([job, other, job])

    assert redis_client.lrange(queue.keys.queue("default", JobPriority.NORMAL), 0, -1) == [
        job.id,
        other.id,
    ]


def test_unique_duplicates_in_later_chunks_resolve_to_the_first(queue, chunk_of_three):
    unique = Flow.of(unique=True)
    jobs = [queue.build_job("bulk.item", [i % 2], flow=unique) for i in range(5)]

    stored = queue.enqueue_many(jobs)

    assert [job.id for job in stored] == [jobs[0].id, jobs[1].id] * 2 + [jobs[0].id]


def test_a_failing_call_of_one_job_says_it_was_not_enqueued(queue, configure):
    job = queue.build_job("bulk.item", [1])
    configure(REDIS_URL="redis://127.0.0.1:1/0", REDIS_CONNECT_TIMEOUT=1)  # nothing listens

    with pytest.raises(RedisUnavailable) as raised:
        queue.enqueue_many([job])

    assert (raised.value.enqueued, raised.value.not_enqueued) == ([], [job])
    assert not getattr(raised.value, "__notes__", None), "nothing was enqueued: nothing to add"


def test_a_failing_chunk_says_which_jobs_were_enqueued_and_which_not(
    queue, redis_client, chunk_of_three
):
    jobs = [queue.build_job("bulk.item", [i]) for i in range(3)]
    jobs += [queue.build_job("bulk.item", [i], queue="emails") for i in range(3, 5)]
    # The second chunk's list holds a value of the wrong type: Redis refuses its script.
    redis_client.set(queue.keys.queue("emails", JobPriority.NORMAL), "not a list")

    with pytest.raises(StoreError) as raised:
        queue.enqueue_many(jobs)

    assert raised.value.enqueued == jobs[:3]
    assert raised.value.not_enqueued == jobs[3:]
    assert "3 of the 5 jobs of this enqueue_many() were enqueued" in str(raised.value.__notes__)
    assert redis_client.lrange(queue.keys.queue("default", JobPriority.NORMAL), 0, -1) == [
        job.id for job in jobs[:3]
    ]


def test_a_bad_item_in_the_middle_enqueues_nothing(queue, redis_client, chunk_of_three):
    jobs = [queue.build_job("bulk.item", [i]) for i in range(5)]

    with pytest.raises(TypeError, match="jobs made by build_job"):
        queue.enqueue_many([*jobs[:4], "bulk.item", jobs[4]])

    assert redis_client.llen(queue.keys.queue("default", JobPriority.NORMAL)) == 0


def test_jobs_of_many_shapes_in_one_call_are_stored_as_one_by_one(queue, redis_client):
    # Each option changes the fields of the record (its shape in the script's argument).
    options = [
        {},
        {"user_id": 7},
        {"user_id": "ann"},
        {"delay": 60},
        {"max_retries": 0, "timeout": 12.5, "priority": "critical"},
        {"meta": {"by": "ops", "é": "ü"}, "queue": "emails"},
        {"flow": Flow.of(unique=True)},
        {"retry_backoff_base": 5},
    ]
    jobs = [
        queue.build_job("bulk.item", [i, "x\n\u2028😀"], {"k": [i]}, **options[i % len(options)])
        for i in range(24)
    ]

    stored = queue.enqueue_many(jobs)

    assert [job.id for job in stored] == [job.id for job in jobs]
    assert queue.get_jobs([job.id for job in jobs]) == {job.id: job for job in jobs}
    # The same record as the job's enqueued alone.
    alone = dataclasses.replace(jobs[4], id=jobs[4].id + "-alone")
    queue.enqueue_many([alone])
    assert redis_client.hgetall(queue.keys.job(alone.id)) == redis_client.hgetall(
        queue.keys.job(jobs[4].id)
    )
    assert [job.id for job in queue.jobs_for_user(7)] == [j.id for j in jobs[1::8]][::-1]
    assert [job.id for job in queue.jobs_for_user("ann")] == [j.id for j in jobs[2::8]][::-1]
    assert redis_client.zrange(queue.keys.scheduled, 0, -1) == [j.id for j in jobs[3::8]]


def test_chunks_hold_fewer_jobs_where_large_payloads_are_allowed(configure):
    """A chunk is one script argument, which Redis caps at 512 MB: with jobs of up to 1 MB a
    call carries 256 of them, with jobs of up to 100 MB two, and never none."""
    assert bulk.chunk_size() == 256  # the default MAX_PAYLOAD_BYTES, 1 MB
    configure(MAX_PAYLOAD_BYTES=100 * 1024 * 1024)
    assert bulk.chunk_size() == 2
    configure(MAX_PAYLOAD_BYTES=1024 * 1024 * 1024)
    assert bulk.chunk_size() == 1
    configure(MAX_PAYLOAD_BYTES=1024)
    assert bulk.chunk_size() == bulk.CHUNK


def test_each_job_of_a_call_of_many_shapes_has_the_record_it_has_alone(queue, redis_client):
    """A call of many jobs sends what their records share once per shape and each job's own
    values; a call of one job sends its record's fields as they are: both write one record."""
    options = [
        {},
        {"user_id": 0},
        {"delay": 60, "meta": {"by": "ops"}},
        {"max_retries": 0, "timeout": 12.5, "priority": "critical", "queue": "emails"},
        {"flow": Flow.of(unique=True)},
    ]
    jobs = [
        queue.build_job("bulk.item", [i], {"k": [i]} if i % 3 else None, **options[i % 5])
        for i in range(15)
    ]
    queue.enqueue_many(jobs)

    for job in jobs:
        if job.unique_key is not None:  # its copy may take the key
            redis_client.delete(f"{queue.prefix}:unique:{job.unique_key}")
        alone = dataclasses.replace(job, id=job.id + "-alone")
        assert queue.enqueue_many([alone]) == [alone]
        assert redis_client.hgetall(queue.keys.job(alone.id)) == redis_client.hgetall(
            queue.keys.job(job.id)
        )


def test_build_jobs_builds_what_build_job_builds(queue, redis_client):
    jobs = queue.build_jobs("tests.testapp.jobs.add", [[1, 2], (3, 4)], priority="high", timeout=9)
    one = queue.build_job("tests.testapp.jobs.add", [3, 4], priority="high", timeout=9)

    assert jobs[1] == dataclasses.replace(one, id=jobs[1].id, created_at=jobs[1].created_at)
    assert len({job.id for job in jobs}) == 2
    assert jobs[0].meta is not jobs[1].meta  # an enqueue writes each one's trace context
    queue.enqueue_many(jobs)
    assert queue.get_jobs([job.id for job in jobs]) == {job.id: job for job in jobs}
    assert queue.build_jobs("tests.testapp.jobs.add", []) == []


@pytest.mark.parametrize(
    ("items", "error", "match"),
    [
        ([[1, 2], [1]], TypeError, "missing a required argument: 'b'"),
        ([[1, 2], [1, 2, 3]], TypeError, "too many positional arguments"),
        ([[1, 2], [1, "x" * (1 << 20)]], ValueError, r"over the limit of 1048576 bytes"),
        ([[1, 2], [1, {1}]], Exception, r"args\[1\]\[1\] is a builtins.set"),
        ([[1, 2], 3], TypeError, r"args\[1\] \(a job's arguments\) must be a list or a tuple"),
    ],
)
def test_build_jobs_refuses_the_arguments_build_job_would(queue, items, error, match):
    with pytest.raises(error, match=match):
        queue.build_jobs("tests.testapp.jobs.add", items)


@pytest.mark.parametrize("flow", [None, Flow.of(unique=True)], ids=["alike", "one_by_one"])
def test_building_many_jobs_runs_no_garbage_collection_and_resumes_it(queue, flow):
    collections = []

    def seen(phase, info):
        if phase == "start":
            collections.append(info["generation"])

    items, options = [[i, i] for i in range(5000)], {} if flow is None else {"flow": flow}
    gc.collect()
    gc.callbacks.append(seen)
    try:
        jobs = queue.build_jobs("tests.testapp.jobs.add", items, **options)
    finally:
        gc.callbacks.remove(seen)
    # 25,000 containers that stay alive: the collector would have run a dozen times, going
    # over them each time; held off, it runs once, when it is resumed.
    assert len(jobs) == 5000
    assert len(collections) <= 1
    assert gc.isenabled()


def test_a_refused_build_resumes_the_garbage_collector_and_leaves_it_off_if_it_was(queue):
    with pytest.raises(TypeError, match="must be a list or a tuple"):
        queue.build_jobs("tests.testapp.jobs.add", [[1, 2], 3])
    assert gc.isenabled()
    gc.disable()
    try:
        assert len(queue.build_jobs("tests.testapp.jobs.add", [[1, 2], [3, 4]])) == 2
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_build_jobs_keys_each_unique_job_on_its_own_arguments(queue):
    jobs = queue.build_jobs("bulk.item", [[1], [2], [1]], flow=Flow.of(unique=True))

    assert jobs[0].unique_key == jobs[2].unique_key != jobs[1].unique_key
    assert [job.id for job in queue.enqueue_many(jobs)] == [jobs[0].id, jobs[1].id, jobs[0].id]


def test_a_failing_call_in_the_middle_of_a_stream_says_exactly_which_were_enqueued(
    queue, redis_client, chunk_of_three
):
    """The calls of a call's chunks go one behind another: when the second fails, the first
    and the third are stored, and the error says so; sending the others again stores them."""
    jobs = [queue.build_job("bulk.item", [i]) for i in range(3)]
    jobs += [queue.build_job("bulk.item", [i], queue="emails") for i in range(3, 6)]
    jobs += [queue.build_job("bulk.item", [i]) for i in range(6, 8)]
    emails = queue.keys.queue("emails", JobPriority.NORMAL)
    redis_client.set(emails, "not a list")  # Redis refuses the second chunk's script

    with pytest.raises(StoreError) as raised:
        queue.enqueue_many(jobs)

    assert raised.value.enqueued == jobs[:3] + jobs[6:]
    assert raised.value.not_enqueued == jobs[3:6]
    assert "5 of the 8 jobs of this enqueue_many() were enqueued" in str(raised.value.__notes__)
    assert redis_client.lrange(queue.keys.queue("default", JobPriority.NORMAL), 0, -1) == [
        job.id for job in jobs[:3] + jobs[6:]
    ]
    redis_client.delete(emails)
    for job in raised.value.not_enqueued:  # stored, but its script failed before listing it
        redis_client.delete(queue.keys.job(job.id))
    queue.enqueue_many(raised.value.not_enqueued)
    expected = dict.fromkeys((j.id for j in jobs[:3] + jobs[6:]), "queue:default:normal")
    assert_census(
        queue,
        redis_client,
        expected | dict.fromkeys((j.id for j in jobs[3:6]), "queue:emails:normal"),
    )
    assert redis_client.hget(queue.keys.events, "enqueued|default|bulk.item") == "5"


def test_a_job_that_cannot_be_sent_stops_the_stream_at_its_chunk(
    queue, redis_client, chunk_of_three
):
    jobs = [queue.build_job("bulk.item", [i]) for i in range(7)]
    jobs[4].created_at = None  # made by hand, not by build_job()

    with pytest.raises(ValueError, match="has no created_at") as raised:
        queue.enqueue_many(jobs)

    assert raised.value.enqueued == jobs[:3]
    assert raised.value.not_enqueued == jobs[3:]
    assert_census(
        queue, redis_client, dict.fromkeys((j.id for j in jobs[:3]), "queue:default:normal")
    )


def test_the_asyncio_client_sends_the_chunks_one_by_one(queue, redis_client, chunk_of_three):
    jobs = [queue.build_job("bulk.item", [i]) for i in range(7)]

    stored = asyncio.run(queue.aenqueue_many(jobs))

    assert stored == jobs
    assert redis_client.lrange(queue.keys.queue("default", JobPriority.NORMAL), 0, -1) == [
        job.id for job in jobs
    ]
