"""A dead letter that is requeued takes its unique key again, in the requeue script, as its
enqueue did: pending again, it keeps a second job of that key out. One whose key another live
job holds stays in the dead letters as it is, and the reply names the holder."""

import asyncio
import time

import pytest

from django_jobs import JobStatus, job
from django_jobs.queue import RequeueOutcome
from django_jobs.worker.leases import Leases
from tests.census import assert_census


@job(unique=True, max_retries=0)
def import_customer(customer_id: int) -> int:
    return customer_id


@job(unique="until_started", unique_key="refresh:{account}", max_retries=0)
def refresh(account: str) -> None:
    pass


@job(unique_for=60, max_retries=0)
def debounced(topic: str) -> None:
    pass


def take(queue):
    return Leases(queue.prefix).dequeue(worker_id="w", lease=30)


def bury(queue, function, *args):
    """A job of ``function`` that failed for good, through the real claim and fail scripts."""
    handle = function.delay(*args)
    claimed = take(queue)
    assert claimed.id == handle.id
    Leases(queue.prefix).fail_job(claimed, "boom")
    assert queue.get_job(handle.id).status is JobStatus.FAILED
    return handle


def lock(queue, handle):
    return f"{queue.prefix}:unique:{handle.job.unique_key}"


def test_requeued_dead_letter_takes_its_unique_key_again(queue, redis_client):
    dead = bury(queue, import_customer, 7)
    assert redis_client.get(lock(queue, dead)) is None, "the dead letter gave its key back"

    assert queue.requeue_dead_outcome([dead.id]) == RequeueOutcome([dead.id], {})

    assert redis_client.get(lock(queue, dead)) == dead.id
    assert redis_client.pttl(lock(queue, dead)) == -1, "until it finishes: no time limit"
    again = import_customer.delay(7)
    assert again.created is False
    assert again.id == dead.id
    assert queue.enqueue(import_customer.name, [7]).id == dead.id, "refused as any held key"
    assert_census(queue, redis_client, {dead.id: "queue:default:normal"})


def test_dead_letter_whose_unique_key_is_held_stays_dead(queue, redis_client):
    dead = bury(queue, import_customer, 7)
    holder = import_customer.delay(7)
    assert holder.created is True
    record = redis_client.hgetall(queue.keys.job(dead.id))
    score = redis_client.zscore(queue.keys.dead, dead.id)

    assert queue.requeue_dead_outcome([dead.id]) == RequeueOutcome([], {dead.id: holder.id})
    assert queue.requeue_dead([dead.id]) == [], "the list of ids requeued, as before"

    assert redis_client.hgetall(queue.keys.job(dead.id)) == record, "its record untouched"
    assert redis_client.zscore(queue.keys.dead, dead.id) == score
    assert redis_client.get(lock(queue, dead)) == holder.id
    assert_census(queue, redis_client, {dead.id: "dead", holder.id: "queue:default:normal"})

    # Once the holder finished, the key is free and the dead letter takes it.
    Leases(queue.prefix).complete_job(take(queue), 7)
    assert queue.requeue_dead([dead.id]) == [dead.id]
    assert import_customer.delay(7).id == dead.id
    assert_census(queue, redis_client, {dead.id: "queue:default:normal", holder.id: "completed"})


def test_a_requeued_job_unique_until_started_holds_its_key_until_a_worker_takes_it(queue):
    dead = bury(queue, refresh, "acme")
    waiting = refresh.delay("acme")
    assert queue.requeue_dead_outcome([dead.id]).held == {dead.id: waiting.id}

    assert take(queue).id == waiting.id, "started: the key is free"
    assert queue.requeue_dead([dead.id]) == [dead.id]
    assert refresh.delay("acme").id == dead.id
    assert take(queue).id == dead.id
    assert refresh.delay("acme").created is True


@pytest.mark.parametrize(
    ("function", "window"),
    [(debounced, 60_000), (import_customer.using(unique_for=30), 30_000)],
    ids=["window", "until finished, bounded"],
)
def test_a_requeued_jobs_hold_is_bounded_by_unique_for_counted_from_the_requeue(
    queue, redis_client, function, window
):
    dead = bury(queue, function, "news")
    if redis_client.exists(lock(queue, dead)):  # a window runs on after the job's end
        redis_client.pexpire(lock(queue, dead), 500)  # most of it gone

    assert queue.requeue_dead([dead.id]) == [dead.id]

    assert window - 5_000 < redis_client.pttl(lock(queue, dead)) <= window
    assert function.delay("news").id == dead.id


def test_a_dead_letter_is_held_by_a_window_whatever_became_of_its_job(queue, redis_client):
    dead = bury(queue, debounced, "news")
    redis_client.pexpire(lock(queue, dead), 1)
    time.sleep(0.01)
    newer = debounced.delay("news")
    Leases(queue.prefix).complete_job(take(queue), None)

    assert queue.requeue_dead_outcome([dead.id]).held == {dead.id: newer.id}
    assert_census(queue, redis_client, {dead.id: "dead", newer.id: "completed"})


def test_dead_letters_of_one_key_requeued_together_resolve_to_the_first(queue, redis_client):
    first = bury(queue, import_customer, 7)
    second = bury(queue, import_customer, 7)

    outcome = queue.requeue_dead_outcome([first.id, second.id])

    assert outcome == RequeueOutcome([first.id], {second.id: first.id})
    assert_census(queue, redis_client, {first.id: "queue:default:normal", second.id: "dead"})


def test_requeue_all_dead_skips_held_jobs_and_requeues_the_rest(queue, redis_client):
    dead = [bury(queue, import_customer, n) for n in range(6)]
    # Live jobs hold the keys of the dead letters at ranks 0 and 3: each batch of two leaves
    # one behind, and the next batch must go on after it.
    holders = {dead[i].id: import_customer.delay(i).id for i in (0, 3)}
    rest = [d.id for i, d in enumerate(dead) if i not in (0, 3)]

    outcome = asyncio.run(queue.arequeue_dead_outcome(batch=2))

    assert outcome == RequeueOutcome(rest, holders)
    assert redis_client.zrange(queue.keys.dead, 0, -1) == [dead[0].id, dead[3].id]
    expected = dict.fromkeys([*rest, *holders.values()], "queue:default:normal")
    assert_census(queue, redis_client, {**expected, dead[0].id: "dead", dead[3].id: "dead"})
    assert queue.requeue_dead(batch=1) == [], "the held ones stay, batch after batch"


def test_requeue_all_dead_stops_at_limit_counting_only_the_jobs_requeued(queue):
    dead = [bury(queue, import_customer, n) for n in range(4)]
    holder = import_customer.delay(0)

    outcome = queue.requeue_dead_outcome(limit=2, batch=1)

    assert outcome == RequeueOutcome([dead[1].id, dead[2].id], {dead[0].id: holder.id})
    assert queue.requeue_dead() == [dead[3].id]


def test_a_unique_for_written_by_hand_does_not_stop_a_requeue(queue, redis_client):
    dead = bury(queue, import_customer, 7)
    redis_client.hset(queue.keys.job(dead.id), "unique_for", "soon")

    assert queue.requeue_dead([dead.id]) == [dead.id]
    assert redis_client.get(lock(queue, dead)) == dead.id
