"""Records that anyone could have written into Redis (pickled or binary fields, absurd numbers,
deep nesting, oversized payloads, keys of the wrong type) never crash a worker: each goes to the
dead-letter queue with its reason, and the worker goes on serving. What ``.delay()`` can refuse,
it refuses with a clear error before anything is written."""

import pickle

import pytest
import redis

from django_jobs import JobStatus, NotJSONSerializable
from django_jobs.checks import check_settings
from django_jobs.job import JobPriority
from django_jobs.serialization import MAX_JSON_DEPTH
from tests.conftest import REDIS_URL
from tests.processes import wait_until
from tests.testapp import jobs

DEEP = "[" * 100_000 + "]" * 100_000
MIB = 1024 * 1024


@pytest.fixture
def raw():
    """A client that returns bytes, to read back records that are not text."""
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


def plant(queue, raw, job_id, **changes):
    """Store the record of a valid ``add(1, 2)`` job under ``job_id``, with ``changes`` made to
    its fields (``None`` deletes one), and make it the next job of its list."""
    fields = queue.build_job("tests.testapp.jobs.add", [1, 2], max_retries=0).to_hash()
    fields.update(changes)
    key = queue.keys.job(job_id)
    raw.hset(key, mapping={k: v for k, v in fields.items() if v is not None})
    raw.rpush(queue.keys.queue("default", JobPriority.NORMAL), job_id)
    return key


HOSTILE = {
    "pickled args": (
        {"args": pickle.dumps([1, 2], protocol=pickle.HIGHEST_PROTOCOL)},
        "field 'args' is not UTF-8 text",
    ),
    "pickled args, protocol 0": ({"args": pickle.dumps([1, 2], protocol=0)}, "'args' is not JSON"),
    "binary name": ({"name": b"\xff\xfe add"}, "field 'name' is not UTF-8 text"),
    "a lone lead byte after text": (
        {"args": '["caf\u00e9", "x"]'.encode() + b"\xc3"},
        "field 'args' is not UTF-8 text",
    ),
    "args nested 100,000 deep": ({"args": DEEP}, "'args' has the invalid value"),
    "a time of 1e400": ({"created_at": "1e400"}, "'created_at' has the invalid value '1e400'"),
    "a nan timeout": ({"timeout": "nan"}, "'timeout' has the invalid value 'nan'"),
    "an infinite timeout": ({"timeout": "inf"}, "'timeout' has the invalid value 'inf'"),
    "a payload over MAX_PAYLOAD_BYTES": (
        {"args": "[" + '"x",' * (MIB // 4) + '"x"]'},
        "over DJANGO_JOBS['MAX_PAYLOAD_BYTES'] (1048576)",
    ),
}


def assert_dead_lettered_and_still_serving(workers, queue, raw, job_id, reason):
    good = jobs.add.delay(2, 3)
    assert good.result(timeout=15) == 5
    record = raw.hgetall(queue.keys.job(job_id))
    assert record[b"status"] == b"failed"
    assert reason in record[b"error"].decode(), record[b"error"]
    assert raw.zscore(queue.keys.dead, job_id) is not None
    logs = workers.logs()
    assert "Traceback" not in logs, logs
    assert "died" not in logs, logs
    assert "WorkerCrashed" not in logs, logs


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_record_is_dead_lettered_and_the_worker_goes_on(workers, queue, raw, case):
    changes, reason = HOSTILE[case]
    plant(queue, raw, "hostile", **changes)
    workers.start("--concurrency", "1")

    assert_dead_lettered_and_still_serving(workers, queue, raw, "hostile", reason)


def test_a_record_of_text_beyond_ascii_is_run_as_it_is(workers, queue, raw):
    # Two-, three- and four-byte UTF-8, written by another program as raw bytes.
    text = ["caf\u00e9 \u2603", "\U0001f600"]
    plant(queue, raw, "text", args=f'["{text[0]}", "{text[1]}"]'.encode())
    workers.start("--concurrency", "1")

    job = queue.wait_for("text", timeout=15)
    assert job.status is JobStatus.COMPLETED, job.error
    assert job.result == text[0] + text[1]


def test_an_over_long_id_is_dead_lettered(workers, queue, raw):
    long_id = "x" * 100
    plant(queue, raw, long_id)
    workers.start("--concurrency", "1")

    assert_dead_lettered_and_still_serving(
        workers, queue, raw, long_id, "the id must be 1 to 64 printable ASCII characters"
    )


def test_a_job_key_of_the_wrong_type_is_dead_lettered(workers, queue, raw):
    key = plant(queue, raw, "wrongtype")
    raw.delete(key)
    raw.set(key, "not a hash")
    workers.start("--concurrency", "1")

    assert_dead_lettered_and_still_serving(
        workers, queue, raw, "wrongtype", "the job key held a string, not a hash"
    )
    assert raw.get(queue.keys.unreadable("wrongtype")) == b"not a hash", "its value is kept"
    assert queue.keys.unreadable("wrongtype") in queue.get_job("wrongtype").error


def test_a_job_key_of_the_wrong_type_is_read_and_listed_as_unreadable_not_an_error(queue, raw):
    key = plant(queue, raw, "wrongtype")
    raw.delete(key)
    raw.rpush(key, "a list")

    raw.zadd(queue.keys.dead, {"wrongtype": 1})  # a zset filtered by queue reads each record

    job = queue.get_job("wrongtype")

    assert job.status is JobStatus.FAILED
    assert "the job key holds a list, not a hash" in job.error
    assert [j.id for j in queue.list_jobs("pending", queue="default")] == ["wrongtype"]
    assert [j.id for j in queue.list_jobs("failed")] == ["wrongtype"]
    assert queue.list_jobs("failed", queue="default") == [], "it names no queue"
    assert raw.type(key) == b"list", "reading changes nothing"


def test_a_delayed_job_key_of_the_wrong_type_is_dead_lettered_when_due(workers, queue, raw):
    key = queue.keys.job("wrongtype")
    raw.set(key, "not a hash")
    raw.zadd(queue.keys.scheduled, {"wrongtype": 0})
    workers.start("--concurrency", "1")

    wait_until(lambda: raw.zscore(queue.keys.dead, "wrongtype") is not None, timeout=15)
    assert_dead_lettered_and_still_serving(
        workers, queue, raw, "wrongtype", "the job key held a string, not a hash"
    )


# -- refused at enqueue -----------------------------------------------------------------------


def test_delay_of_an_argument_nested_too_deep_names_the_path_and_the_limit(queue, redis_client):
    deep: list = []
    for _ in range(100_000):
        deep = [deep]

    with pytest.raises(NotJSONSerializable, match=rf"args\[0\]\[0\].* more than {MAX_JSON_DEPTH}"):
        jobs.add.delay(deep, 1)
    assert list(redis_client.scan_iter(match=f"{queue.prefix}*")) == []


def test_delay_of_a_list_that_contains_itself_is_refused(queue):
    looped: list = []
    looped.append(looped)

    with pytest.raises(NotJSONSerializable, match="contains itself"):
        jobs.add.delay(1, b=looped)


def test_arguments_nested_up_to_the_limit_are_accepted(queue):
    deep: list = []
    for _ in range(MAX_JSON_DEPTH - 1):
        deep = [deep]

    assert queue.get_job(jobs.add.delay(deep, 1).id).args[0] == deep


def test_delay_of_arguments_over_max_payload_bytes_names_the_size_and_the_limit(
    queue, redis_client, configure
):
    configure(MAX_PAYLOAD_BYTES=1000)

    with pytest.raises(ValueError, match=r"take 1006 bytes as JSON .* limit of 1000 bytes"):
        jobs.add.delay("x" * 1000, 1)
    assert list(redis_client.scan_iter(match=f"{queue.prefix}*")) == []
    assert jobs.add.delay("x" * 900, 1)


def test_the_default_payload_limit_is_one_mib(queue):
    with pytest.raises(ValueError, match=rf"over the limit of {MIB} bytes"):
        jobs.add.delay("x" * MIB, 1)


@pytest.mark.parametrize("value", [0, -1, 1.5, "1MB", True])
def test_a_bad_max_payload_bytes_is_reported_by_the_system_checks(configure, value):
    configure(MAX_PAYLOAD_BYTES=value)

    messages = [str(m.msg) for m in check_settings() if m.id == "django_jobs.E003"]

    assert any("MAX_PAYLOAD_BYTES" in m and "integer >= 1" in m for m in messages), messages


def test_cancel_and_requeue_of_a_job_key_of_the_wrong_type_change_nothing(queue, raw):
    key = queue.keys.job("wrongtype")
    raw.set(key, "not a hash")
    raw.zadd(queue.keys.dead, {"wrongtype": 1})

    assert queue.cancel_job("wrongtype") == "missing"
    assert queue.requeue_dead(["wrongtype"]) == []
    assert queue.requeue_dead() == []

    assert raw.get(key) == b"not a hash"
    assert raw.zscore(queue.keys.dead, "wrongtype") == 1
