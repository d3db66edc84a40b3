"""Flow control across real worker processes: a rate limit shared by four workers keeps its
rate, a concurrency limit is never exceeded, concurrent ``.delay()`` calls of a unique job from
eight processes make one job, and a SIGKILLed worker's unique lock and concurrency slot come
back with its lease. What ran, and when, is read from the ledger the jobs write (outside Redis,
``time.time()``: one clock for every process of the machine).

The rate test runs 300 jobs (about 15 s) with a 10% bound; JOBS_TEST_FULL_FLOW=1 runs the
issue's 2,000 jobs (about 100 s at 20/s) with its 5% bound.
"""

import multiprocessing
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor

from tests.census import assert_census
from tests.processes import wait_until
from tests.testapp import flow_jobs

RATE = 20  # flow_jobs.metered: "20/s"
FULL = bool(os.environ.get("JOBS_TEST_FULL_FLOW"))
RATE_JOBS, RATE_TOLERANCE = (2000, 0.05) if FULL else (300, 0.10)


def lines(path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def max_overlap(spans: list[tuple[float, float]]) -> int:
    """The most spans (start, end) open at one time; one that ends as another starts does not
    overlap it."""
    events = sorted([(end, -1) for _, end in spans] + [(start, 1) for start, _ in spans])
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def most_beyond(times: list[float], rate: float) -> float:
    """The most that any stretch of ``times`` (sorted) holds beyond ``rate`` a second over its
    length: a token bucket of ``rate`` a second holding ``count`` allows ``count`` at most."""
    most, lowest = 0.0, float("inf")
    for k, at in enumerate(times):
        # Stretch i..k holds k - i + 1 times over at - times[i] seconds.
        lowest = min(lowest, k - rate * at)
        most = max(most, k - rate * at - lowest + 1)
    return most


def start_workers(workers, count: int, *options: str) -> None:
    for n in range(count):
        workers.start("--worker-id", f"w{n}", *options)


def test_four_workers_start_rate_limited_jobs_at_the_rate(workers, ledger, queue, redis_client):
    built = [queue.build_job(flow_jobs.metered.name, [f"m{i}"]) for i in range(RATE_JOBS)]
    for start in range(0, RATE_JOBS, 500):
        queue.enqueue_many(built[start : start + 500])
    start_workers(workers, 4, "--concurrency", "1")

    wait_until(
        lambda: redis_client.zcard(queue.keys.completed) == RATE_JOBS,
        timeout=RATE_JOBS / RATE + 60,
        interval=0.5,
        message="every rate-limited job to complete",
    )
    started = sorted(float(at) for _, at in lines(ledger / "starts.log"))
    assert len(started) == RATE_JOBS, "each job started once"
    # The bucket starts full (RATE tokens at once) and refills while that burst runs: the
    # steady rate is measured from the start 2 * RATE to the last.
    steady = started[2 * RATE :]
    rate = (len(steady) - 1) / (steady[-1] - steady[0])
    print(f"{RATE_JOBS} jobs, 4 workers: {rate:.3f} starts/s after the burst (limit {RATE}/s)")
    assert abs(rate - RATE) <= RATE * RATE_TOLERANCE, f"{rate:.2f} starts/s"
    # Never more than the bucket allows in any stretch of time: its RATE tokens and RATE a
    # second, from the claims' own times (each record's started_at: its claim script's `now`),
    # and one more: each worker takes its `now` before its call, so two claims' times may be
    # out of the order they ran in.
    with redis_client.pipeline(transaction=False) as pipe:
        for job in built:
            pipe.hget(queue.keys.job(job.id), "started_at")
        claimed = sorted(float(at) for at in pipe.execute())
    print(f"most claims in a stretch, less {RATE}/s: {most_beyond(claimed, RATE):.3f}")
    assert most_beyond(claimed, RATE) <= RATE + 1
    assert_census(queue, redis_client, {job.id: "completed" for job in built})


def test_a_concurrency_limit_of_two_per_key_is_never_exceeded(workers, ledger, queue, redis_client):
    # Six processes for at most four runs at once (two of each group): the limits, not the
    # workers, hold the jobs back.
    start_workers(workers, 3, "--concurrency", "2")
    wait_until(lambda: redis_client.zcard(queue.keys.workers) == 3, message="the workers")
    count = 12  # of each group
    built = [
        queue.build_job(flow_jobs.paired.name, [group, f"p{i}", 0.25])
        for i in range(count)
        for group in "ab"
    ]
    queue.enqueue_many(built)

    wait_until(
        lambda: redis_client.zcard(queue.keys.completed) == len(built),
        timeout=60,
        message="every concurrency-limited job to complete",
    )
    spans: dict[str, list[tuple[float, float]]] = {"a": [], "b": []}
    for label, start, end in lines(ledger / "spans.log"):
        spans[label.split("/")[0]].append((float(start), float(end)))
    assert {group: len(runs) for group, runs in spans.items()} == {"a": count, "b": count}
    assert {group: max_overlap(runs) for group, runs in spans.items()} == {"a": 2, "b": 2}
    assert max_overlap(spans["a"] + spans["b"]) == 4, "the limit is per key"
    assert not list(redis_client.scan_iter(match=f"{queue.prefix}:running:*")), "slots given back"
    assert_census(queue, redis_client, {job.id: "completed" for job in built})


def delay_singleton(calls: int) -> list[tuple[str, bool]]:
    """In a process of its own: wait for the others, then ``.delay()`` the same unique job."""
    BARRIER[0].wait(timeout=60)
    return [(h.id, h.created) for h in (flow_jobs.singleton.delay(7) for _ in range(calls))]


BARRIER: list = []  # in each process of the pool, the barrier they all start from


def setup_process(barrier) -> None:
    import django

    django.setup()
    BARRIER.append(barrier)


def test_concurrent_delays_of_a_unique_job_from_eight_processes_make_one_job(
    queue, redis_client, prefix, monkeypatch
):
    processes, calls = 8, 125
    monkeypatch.setenv("JOBS_TEST_PREFIX", prefix)  # read by tests/settings.py in each process
    context = multiprocessing.get_context("spawn")  # each with its own Django and connections
    barrier = context.Barrier(processes)
    with ProcessPoolExecutor(
        processes, mp_context=context, initializer=setup_process, initargs=(barrier,)
    ) as pool:
        futures = [pool.submit(delay_singleton, calls) for _ in range(processes)]
        handles = [handle for future in futures for handle in future.result(timeout=120)]

    assert len(handles) == processes * calls
    assert sum(created for _, created in handles) == 1, "exactly one call created the job"
    ids = {job_id for job_id, _ in handles}
    assert len(ids) == 1, "every call names the same job"
    assert_census(queue, redis_client, {ids.pop(): "queue:default:normal"})


def test_a_killed_workers_unique_lock_and_concurrency_slot_come_back_with_its_lease(
    workers, ledger, queue, redis_client
):
    lease = workers.settings["LEASE_TIMEOUT"]
    procs = {name: workers.start("--concurrency", "1", "--worker-id", name) for name in "ab"}
    wait_until(lambda: redis_client.zcard(queue.keys.workers) == 2, message="both workers")
    held = flow_jobs.exclusive.delay("s", "held", 1.5)
    other = flow_jobs.exclusive.delay("s", "other", 0.1)  # the same slot: it waits
    wait_until(lambda: lines(ledger / "held.runs"), message="the job to start")
    holder = held.refresh().job.worker_id.split(":")[0]

    os.killpg(procs[holder].pid, signal.SIGKILL)
    procs[holder].wait()
    killed = time.time()
    assert lines(ledger / "spans.log") == [], "killed while the job ran"
    again = flow_jobs.exclusive.delay("s", "held", 1.5)
    assert (again.id, again.created) == (held.id, False), "the lost run still holds the key"

    # The slot comes back when the lease runs out, to the job that waited for it or to the
    # lost one, recovered: the first run to end tells when it started.
    first_end = wait_until(
        lambda: lines(ledger / "spans.log"), timeout=20, message="a run of the slot to end"
    )
    back = float(first_end[0][1]) - killed
    print(f"the slot came back {back:.2f} s after the kill (lease {lease} s)")
    assert back <= lease + 1.0, "the slot came back with the lease"
    wait_until(lambda: len(lines(ledger / "held.runs")) == 2, message="the lost job to run again")
    duplicate = flow_jobs.exclusive.delay("s", "held", 1.5)
    assert (duplicate.id, duplicate.created) == (held.id, False), "running again: still held"

    assert held.result(timeout=20) == "held"
    assert other.result(timeout=20) == "other"
    assert held.refresh().job.lost_count == 1
    after = flow_jobs.exclusive.delay("s", "held", 0.01)
    assert after.created is True, "finished: the key is free"
    assert after.result(timeout=20) == "held"
    spans = [(float(start), float(end)) for _, start, end in lines(ledger / "spans.log")]
    assert len(spans) == 3
    assert max_overlap(spans) == 1, "one run of the slot at a time"
    assert not list(redis_client.scan_iter(match=f"{queue.prefix}:unique:*"))
    assert not list(redis_client.scan_iter(match=f"{queue.prefix}:running:*"))
    assert_census(queue, redis_client, {j.id: "completed" for j in (held, other, after)})
