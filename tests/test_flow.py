"""Flow control: unique jobs, rate limits and concurrency limits, held in the enqueue and claim
scripts (one round trip each) and given back by whatever ends a run."""

import time

import pytest

from django_jobs import JobStatus, job
from django_jobs.worker.leases import Leases
from tests.census import assert_census


@job(unique=True)
def import_customer(customer_id: int) -> int:
    return customer_id


@job(unique="until_started", unique_key="refresh:{account}")
def refresh(account: str, force: bool = False) -> None:
    pass


@job(unique_for=60)
def debounced(topic: str) -> None:
    pass


@job(rate_limit="2/s")
def call_api(n: int) -> int:
    return n


# A token every 2 s: a test that must see the bucket empty has 2 s of slack on a loaded
# machine, where call_api's half second can pass between two calls.
@job(rate_limit="2/4s")
def call_slow_api(n: int) -> int:
    return n


@job(concurrency=1, concurrency_key="customer:{customer_id}")
def sync_customer(customer_id: int, step: int = 0) -> None:
    pass


@job
def plain(n: int = 0) -> int:
    return n


def take(queue, **options):
    return Leases(queue.prefix).dequeue(worker_id="w", lease=options.get("lease", 30))


# -- unique jobs --------------------------------------------------------------------------------


def test_a_second_delay_of_a_pending_unique_job_returns_the_first_one(queue, redis_client):
    first = import_customer.delay(7)
    second = import_customer.delay(7)
    other = import_customer.delay(8)

    assert first.created is True
    assert second.created is False
    assert second.id == first.id
    assert second.job.args == [7]
    assert other.created is True
    assert other.id != first.id
    assert_census(
        queue,
        redis_client,
        {first.id: "queue:default:normal", other.id: "queue:default:normal"},
    )


def test_a_unique_job_until_finished_stays_unique_while_it_runs_and_frees_its_key_at_the_end(
    queue,
):
    first = import_customer.delay(7)
    running = take(queue)
    assert import_customer.delay(7).id == first.id, "still running: the same job"

    Leases(queue.prefix).complete_job(running, 7)

    again = import_customer.delay(7)
    assert again.created is True
    assert again.id != first.id


def test_a_unique_job_until_started_frees_its_key_when_a_worker_takes_it(queue):
    first = refresh.delay("acme")
    assert refresh.delay("acme", force=True).id == first.id, "the key is the account alone"
    assert take(queue).id == first.id

    second = refresh.delay("acme")
    assert second.created is True
    assert second.id != first.id


def test_a_unique_window_holds_after_the_job_finished_until_its_time_is_up(queue, redis_client):
    first = debounced.delay("news")
    Leases(queue.prefix).complete_job(take(queue), None)
    assert debounced.delay("news").id == first.id, "finished, but inside its 60 s window"

    ttl = redis_client.pttl(f"{queue.prefix}:unique:{first.job.unique_key}")
    assert 55_000 < ttl <= 60_000
    redis_client.pexpire(f"{queue.prefix}:unique:{first.job.unique_key}", 1)
    time.sleep(0.01)
    assert debounced.delay("news").created is True


@pytest.mark.parametrize("end", ["cancel", "dead letter", "delete"])
def test_a_unique_key_is_freed_when_its_job_ends_any_way(queue, end):
    first = import_customer.using(max_retries=0).delay(7)
    if end == "cancel":
        first.cancel()
    elif end == "dead letter":
        Leases(queue.prefix).fail_job(take(queue), "boom")
        assert queue.get_job(first.id).status is JobStatus.FAILED
    else:
        queue.delete_job(first.id)

    assert import_customer.delay(7).created is True


def test_a_unique_key_whose_holder_vanished_is_never_stranded(queue, redis_client):
    first = import_customer.delay(7)
    # Its record lost (expired, deleted by hand) while the key stayed: the key is free.
    redis_client.delete(f"{queue.prefix}:job:{first.id}")

    assert import_customer.delay(7).created is True


def test_using_makes_one_call_unique_and_unique_false_turns_it_off(queue):
    first = plain.using(unique_key="nightly").delay(1)
    assert plain.using(unique_key="nightly").delay(2).id == first.id
    assert plain.delay(3).created is True, "without the option the job is not unique"
    assert import_customer.using(unique=False).delay(7).created is True
    assert import_customer.using(unique=False).delay(7).created is True


def test_duplicates_inside_one_bulk_enqueue_resolve_to_the_first(queue):
    jobs = [queue.build_job(import_customer.name, [5]) for _ in range(3)]
    stored = queue.enqueue_many(jobs)
    assert [j.id for j in stored] == [jobs[0].id] * 3


def test_a_periodic_run_whose_previous_run_holds_the_key_is_not_enqueued_again(queue):
    from django_jobs.store import calls
    from django_jobs.store.execute import run

    keys = queue.keys
    tick = [queue.build_job(import_customer.name, [1]) for _ in range(2)]
    now = time.time()
    options = {"task": "t", "ttl": 60, "now": now, "job_ttl": 3600}
    first = run(calls.fire(keys, due=now, job=tick[0], **options))
    second = run(calls.fire(keys, due=now + 60, job=tick[1], **options))

    assert first == tick[0].id
    assert second == tick[0].id, "the earlier run is still pending"
    assert queue.get_job(tick[1].id) is None


# -- rate limits --------------------------------------------------------------------------------


def test_a_rate_limited_job_waits_for_a_token_while_others_run(queue, redis_client):
    limited = [call_slow_api.using(priority="high").delay(n) for n in range(3)]
    other = plain.delay()

    taken = [take(queue).id for _ in range(3)]
    assert taken == [limited[0].id, limited[1].id, other.id], (
        "two tokens, then the next eligible job of lower priority"
    )
    assert take(queue) is None
    assert queue.get_job(limited[2].id).status is JobStatus.PENDING
    assert_census(
        queue,
        redis_client,
        {
            limited[0].id: "processing",
            limited[1].id: "processing",
            other.id: "processing",
            limited[2].id: f"waiting:2|default|rate:{call_slow_api.name}",
        },
    )
    claim = Leases(queue.prefix).claim(["default"], "w", 30)
    assert claim.job is None
    assert claim.next_due is not None
    assert 0 < claim.next_due - time.time() <= 2.05, "the next token is due in about 2 s"

    time.sleep(max(claim.next_due - time.time(), 0) + 0.01)
    assert take(queue).id == limited[2].id


def test_strict_priority_holds_among_jobs_a_limit_lets_run(queue):
    for n in range(2):
        call_api.delay(n)  # spends both tokens
    [take(queue) for _ in range(2)]
    parked = call_api.using(priority="critical").delay(9)
    low = plain.using(priority="low").delay()
    high = plain.using(priority="high").delay()

    assert take(queue).id == high.id
    assert take(queue).id == low.id
    time.sleep(0.55)
    assert take(queue).id == parked.id


def test_a_claim_with_a_clock_behind_gives_no_tokens_back_to_the_others(queue):
    limited = [call_api.delay(n) for n in range(4)]
    leases = Leases(queue.prefix)
    ahead = leases.claim_options("w")
    behind = {**ahead, "now": ahead["now"] - 0.5}  # another host's clock, or a late claim

    taken = []
    for options in (ahead, behind, ahead, behind):
        claim = leases.claim(["default"], options={**options, "token": f"t{len(taken)}"})
        taken.append(claim.job and claim.job.id)
    # The bucket of 2 allows two claims at one instant; the one whose clock is behind takes
    # the second token and must not set the bucket's time back for the next to refill again.
    assert taken == [limited[0].id, limited[1].id, None, None]


# -- concurrency limits -------------------------------------------------------------------------


def test_a_concurrency_limit_is_shared_per_key_and_a_slot_comes_back_at_the_end(queue):
    a1 = sync_customer.delay(1, step=1)
    a2 = sync_customer.delay(1, step=2)
    b1 = sync_customer.delay(2)

    first, second = take(queue), take(queue)
    assert [first.id, second.id] == [a1.id, b1.id], "customer 1 runs one at a time"
    assert take(queue) is None

    Leases(queue.prefix).complete_job(first, None)
    assert take(queue).id == a2.id


@pytest.mark.parametrize("end", ["fail", "cancel", "release"])
def test_a_concurrency_slot_comes_back_when_the_run_stops_any_way(queue, end):
    first = sync_customer.using(max_retries=1).delay(1)
    waiting = sync_customer.delay(1)
    running = take(queue)
    assert take(queue) is None
    leases = Leases(queue.prefix)
    if end == "fail":
        leases.fail_job(running, "boom")
    elif end == "cancel":
        first.cancel()
        queue.cancel_job(first.id, running.lease_token)
    else:
        leases.release_job(running)

    if end == "release":
        # Both wait for the one slot now: the parked job is looked at first.
        assert take(queue).id in (first.id, waiting.id)
    else:
        assert take(queue).id == waiting.id
    assert take(queue) is None


def test_a_lost_workers_concurrency_slot_comes_back_with_its_lease(queue, redis_client):
    first = sync_customer.delay(3)
    second = sync_customer.delay(3)
    assert take(queue, lease=0.05).id == first.id
    assert take(queue) is None
    time.sleep(0.1)

    assert take(queue).id == second.id, "the lost lease's slot is free even before recovery"
    Leases(queue.prefix).recover_expired()
    assert redis_client.zrange(f"{queue.prefix}:running:customer:3", 0, -1) == [second.id]


def test_a_renewed_lease_keeps_its_concurrency_slot(queue):
    sync_customer.delay(4)
    sync_customer.delay(4)
    running = take(queue, lease=0.2)
    Leases(queue.prefix).extend_lease([running], lease=30)
    time.sleep(0.3)
    assert take(queue) is None


def test_a_cancelled_or_deleted_parked_job_leaves_its_waiting_list(queue, redis_client):
    sync_customer.delay(5)
    parked = [sync_customer.delay(5) for _ in range(2)]
    running = take(queue)
    assert take(queue) is None

    parked[0].cancel()
    queue.delete_job(parked[1].id)

    assert_census(
        queue,
        redis_client,
        {running.id: "processing", parked[0].id: "cancelled"},
    )
    assert redis_client.zcard(f"{queue.prefix}:parked") == 0


def test_queue_limits_apply_to_every_job_of_the_queue(configure, queue):
    configure(QUEUE_LIMITS={"emails": {"concurrency": 1, "rate": "100/s"}})
    jobs = [plain.using(queue="emails").delay(n) for n in range(2)]
    assert jobs[0].job.limits == [
        ["concurrency", "queue:emails", 1],
        ["rate", "queue:emails", 100, 1.0],
    ]
    running = Leases(queue.prefix).dequeue(queues=["emails"], worker_id="w", lease=30)
    assert Leases(queue.prefix).dequeue(queues=["emails"], worker_id="w", lease=30) is None
    Leases(queue.prefix).complete_job(running, None)
    assert Leases(queue.prefix).dequeue(queues=["emails"], worker_id="w", lease=30).id == jobs[1].id


def test_a_job_without_limits_stores_no_flow_fields(queue, redis_client):
    handle = plain.delay()
    fields = redis_client.hkeys(f"{queue.prefix}:job:{handle.id}")
    assert not {"limits", "unique_key", "unique_until", "unique_for"} & set(fields)


# -- bad options, refused where they are written -------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate_limit": "10 per second"}, "rate_limit must be a rate such as '10/s'"),
        ({"rate_limit": "0/s"}, "at least 1"),
        ({"concurrency": 0}, "concurrency must be an integer >= 1"),
        ({"unique": "always"}, "unique must be True, 'until_started' or 'until_finished'"),
        ({"unique_for": -1}, "unique_for must be a positive number of seconds"),
        ({"concurrency_key": "x"}, "pass concurrency too"),
        ({"unique_key": ""}, "unique_key must be a non-empty string"),
    ],
)
def test_bad_flow_options_are_refused_at_the_decorator(options, message):
    with pytest.raises(ValueError, match=message):
        job(**options)(lambda: None)


def test_a_key_that_names_no_parameter_is_refused_at_the_call(queue, redis_client):
    @job(concurrency=1, concurrency_key="customer:{customer}")
    def typo(customer_id: int) -> None:
        pass

    with pytest.raises(ValueError, match=r"concurrency_key 'customer:\{customer\}' of job .*typo"):
        typo.delay(1)
    assert list(redis_client.scan_iter(match=f"{queue.prefix}:*")) == []


def test_bad_queue_limits_are_named_by_the_setting(configure, queue):
    configure(QUEUE_LIMITS={"emails": {"rate": "fast"}})
    with pytest.raises(ValueError, match=r"QUEUE_LIMITS'\]\['emails'\]\['rate'\] must be a rate"):
        plain.delay()
