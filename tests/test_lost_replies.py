"""A reply Redis sent but the caller never got: the job it stored exists once, whether the
caller was told (a second send went through) or not (``RedisUnavailable``)."""

import pytest

from django_jobs import JobPriority, RedisUnavailable
from django_jobs.store.scripts import FUNCTIONS, SCRIPTS
from tests.census import assert_census
from tests.processes import wait_until
from tests.proxy import LossyProxy
from tests.test_idle_claims import blocked_waits
from tests.testapp import jobs


@pytest.fixture
def proxy(private_redis, configure):
    """This test process talks to its private Redis through a :class:`LossyProxy`, whose
    scripts are loaded (a first call answers "Function not found", which must not be lost)."""
    lossy = LossyProxy(str(private_redis.socket))
    configure(REDIS_URL=lossy.url, REDIS_SOCKET_TIMEOUT=2)
    yield lossy
    lossy.close()


def test_a_lost_enqueue_reply_stores_the_job_once(proxy, queue, private_redis):
    warm_up = jobs.add.delay(0, 0)
    proxy.losses_left = 1

    handle = jobs.add.delay(1, 2)

    assert proxy.lost == 1
    assert handle.refresh().job.args == [1, 2]
    assert_census(
        queue,
        private_redis.client(),
        {warm_up.id: "queue:default:normal", handle.id: "queue:default:normal"},
    )


def test_a_lost_enqueue_reply_stores_a_delayed_job_once(proxy, queue, private_redis):
    jobs.add.delay(0, 0)
    proxy.losses_left = 1

    handle = jobs.add.using(delay=60).delay(1, 2)

    assert proxy.lost == 1
    assert private_redis.client().zrange(queue.keys.scheduled, 0, -1) == [handle.id]


def test_lost_replies_to_every_send_raise_but_store_the_job_once(proxy, queue, private_redis):
    warm_up = jobs.add.delay(0, 0)
    proxy.losses_left = 100
    client = private_redis.client()

    with pytest.raises(RedisUnavailable):
        queue.enqueue("tests.testapp.jobs.add", [1, 2])

    assert proxy.lost >= 2  # sent at least twice, by redis-py's retries and ours
    normal = queue.keys.queue("default", JobPriority.NORMAL)
    stored = set(client.lrange(normal, 0, -1)) - {warm_up.id}
    assert len(stored) == 1
    (job_id,) = stored
    assert_census(
        queue, client, {warm_up.id: "queue:default:normal", job_id: "queue:default:normal"}
    )


@pytest.fixture
def lossy_workers(proxy, private_redis, workers):
    """Worker processes that talk to the private Redis through the proxy, with leases long
    enough that a job stranded until its lease expires would show."""
    client = private_redis.client()
    # A first call's "Function not found" (or NOSCRIPT) must not be what is lost.
    client.function_load(FUNCTIONS.source, replace=True)
    for script in SCRIPTS.values():
        client.script_load(script.source)
    workers.settings.update(REDIS_URL=proxy.url, LEASE_TIMEOUT=30)
    return workers


def test_a_lost_claim_reply_neither_strands_the_job_nor_counts_it_as_lost(
    lossy_workers, proxy, queue, private_redis
):
    handle = jobs.add.delay(2, 3)
    proxy.lose(1, "claim")

    lossy_workers.start("--concurrency", "1")

    assert handle.result(timeout=15) == 5, "not left to wait for its 30 s lease"
    assert proxy.lost == 1
    job = queue.get_job(handle.id)
    assert (job.lost_count, job.attempt) == (0, 1)
    assert_census(queue, private_redis.client(), {handle.id: "completed"})


def test_a_lost_reply_to_a_completion_and_claim_records_once_and_runs_the_next_job(
    lossy_workers, proxy, queue, private_redis, ledger
):
    first, second = jobs.record.delay("first"), jobs.record.delay("second")
    proxy.lose(1, "ack_claim")

    worker = lossy_workers.start("--concurrency", "1")

    assert second.result(timeout=15) == "second", "not left to wait for its 30 s lease"
    assert first.result(timeout=1) == "first"
    assert proxy.lost == 1
    assert (ledger / "record.log").read_text().split() == ["first", "second"]
    assert queue.stats()["counters"].get("stale_acks", 0) == 0
    assert "not recorded" not in lossy_workers.output(worker)
    assert_census(queue, private_redis.client(), {first.id: "completed", second.id: "completed"})


def test_a_lost_reply_to_the_record_of_the_first_job_after_a_wait_records_once_and_goes_on(
    lossy_workers, proxy, queue, private_redis, ledger
):
    client = private_redis.client()
    worker = lossy_workers.start("--concurrency", "1")
    wait_until(lambda: blocked_waits(client), message="the child to wait")
    proxy.lose(1, "ack")  # the first job after the wait is recorded on its own (child.py)

    first = jobs.record.delay("first")
    assert first.result(timeout=15) == "first"
    wait_until(lambda: blocked_waits(client), message="the child to wait again")
    second = jobs.record.delay("second")

    assert second.result(timeout=15) == "second", lossy_workers.output(worker)
    assert proxy.lost == 1
    assert (ledger / "record.log").read_text().split() == ["first", "second"]
    assert queue.stats()["counters"].get("stale_acks", 0) == 0
    assert "not recorded" not in lossy_workers.output(worker)
    assert_census(queue, private_redis.client(), {first.id: "completed", second.id: "completed"})
