"""Many faults at once, in a random order: workers killed (SIGKILL, SIGTERM), frozen (SIGSTOP)
past their leases, Redis crashing and coming back from its AOF, and connections dropped as a
script's reply comes back, while a producer enqueues sync jobs, quick and slow, and async ones.

The other fault tests each show one fault at a chosen moment; this one lets them meet. When the
faults stop, every job that ``.delay()`` accepted must run, every job record must end in the
completed index and nowhere else, and a job that ran twice must say why in its record (a
lost or late worker, or a retry): at-least-once, never a silent double. Chains and groups pass
their results on, in order, through all of it. The seed is printed; ``JOBS_CHAOS_SEED``
replays a run's order of faults (not its timing)."""

import collections
import os
import random
import signal
import time
from typing import Any

import pytest

from django_jobs import RedisUnavailable, chain, group
from tests.census import assert_all_completed
from tests.processes import wait_until
from tests.producer import Producer
from tests.proxy import LossyProxy
from tests.testapp import async_jobs, jobs

# Seconds of faults (JOBS_CHAOS_SECONDS for a longer soak). The drain afterwards takes a few
# more.
CHAOS_SECONDS = float(os.environ.get("JOBS_CHAOS_SECONDS") or 40)


class Workers:
    """Two ``runworker`` processes, each restarted after it was killed or stopped."""

    def __init__(self, workers) -> None:
        self.workers = workers
        # The second one runs async jobs side by side on its child's event loop.
        self.argv = [("--concurrency", "2"), ("--concurrency", "1", "--async-concurrency", "4")]
        self.procs = [workers.start(*argv) for argv in self.argv]

    def restart(self, index: int) -> None:
        self.procs[index] = self.workers.start(*self.argv[index])

    def kill(self, index: int, signum: int) -> None:
        """``signum`` to worker ``index``'s process group (the supervisor and its children)."""
        proc = self.procs[index]
        if proc.poll() is None:
            os.killpg(proc.pid, signum)
        if signum in (signal.SIGKILL, signal.SIGTERM):
            proc.wait(timeout=60)
            self.restart(index)


@pytest.fixture
def proxy(private_redis, configure, monkeypatch):
    """Everyone (this process and the workers) talks to Redis through a proxy that can drop a
    connection as a script's reply comes back: the script ran, its caller never heard."""
    lossy = LossyProxy(str(private_redis.socket))
    monkeypatch.setenv("REDIS_URL", lossy.url)
    configure(REDIS_URL=lossy.url)
    yield lossy
    lossy.close()


def send_workflows(n: int, producer: Producer) -> list[tuple[Any, list[str]]]:
    """A chain of three steps and a group of five members and a callback, each step adding
    its label to the list it received; their labels and ids go to ``producer``'s accepted."""
    steps = [f"chain{n}-{k}" for k in range(3)]
    members = [f"group{n}-{k}" for k in range(5)]
    try:
        flow = chain(jobs.link.s([], steps[0]), *(jobs.link.s(label) for label in steps[1:]))
        chained = flow.delay()
        grouped = group(jobs.link.s([], label) for label in members).then(
            jobs.link_all.s(f"group{n}-then")
        )
        gathered = grouped.delay()
    except RedisUnavailable:  # Redis is down: a workflow is stored whole or not at all
        return []
    ids = [step.id for step in chained.steps]
    ids += [member.id for member in gathered.steps[0].members] + [gathered.steps[1].id]
    for label, job_id in zip([*steps, *members, f"group{n}-then"], ids, strict=True):
        producer.ids[label] = job_id
        producer.accepted.append((time.monotonic(), label))
    return [(chained, steps), (gathered.steps[1], [*members, f"group{n}-then"])]


def ran_in_order(ledger) -> list[str]:
    return (ledger / "record.log").read_text().split()


def test_jobs_survive_workers_and_redis_dying_at_random(
    private_redis, proxy, workers, ledger, queue
):
    seed = int(os.environ.get("JOBS_CHAOS_SEED") or time.time())
    print(f"JOBS_CHAOS_SEED={seed}")
    rng = random.Random(seed)
    # Kills must not run a job into the dead-letter queue: MAX_LOST is not what is tested here.
    workers.settings = {**workers.settings, "MAX_LOST": 1000, "MAX_RETRIES": 1000}
    pool = Workers(workers)
    sender = random.Random(seed + 1)  # the producer's thread has its own

    def send(label: str):
        kind = sender.random()
        if kind < 0.3:  # one job in three runs long enough to meet a fault
            return jobs.record_slowly.delay(label, sender.uniform(0.02, 0.3))
        if kind < 0.45:  # writes its label as it starts (and label/done as it ends)
            return async_jobs.async_record.delay(label, sender.uniform(0.02, 0.3))
        return jobs.record.delay(label)

    producer = Producer(pause=0.02, send=send)
    producer.start()
    faults: collections.Counter[str] = collections.Counter()
    flows: list[tuple[Any, list[str]]] = []  # (handle, the labels its result must list)
    try:
        deadline = time.monotonic() + CHAOS_SECONDS
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(0.5, 2.0))
            fault = rng.choice(["kill", "term", "freeze", "redis", "delayed", "lose", "workflow"])
            faults[fault] += 1
            index = rng.randrange(len(pool.procs))
            if fault == "kill":
                pool.kill(index, signal.SIGKILL)
            elif fault == "term":
                pool.kill(index, signal.SIGTERM)
            elif fault == "freeze":  # past the lease (1 s): its jobs go to the other worker
                pool.kill(index, signal.SIGSTOP)
                time.sleep(rng.uniform(0.5, 2.5))
                pool.kill(index, signal.SIGCONT)
            elif fault == "redis":
                private_redis.kill()
                time.sleep(rng.uniform(0.1, 1.0))
                private_redis.start()
            elif fault == "lose":  # the replies of the next few scripts, whoever calls them
                proxy.lose(rng.randint(1, 5))
            elif fault == "workflow":  # a chain of three and a group of five with its callback
                flows += send_workflows(faults[fault], producer)
            else:  # jobs due during the faults, promoted by whichever worker is up
                for n in range(5):
                    label = f"delayed{faults[fault]}-{n}"
                    try:
                        job_id = jobs.record.using(delay=rng.uniform(0.2, 3)).delay(label).id
                    except Exception:  # Redis may be down: the producer counts those
                        continue
                    producer.ids[label] = job_id
                    producer.accepted.append((time.monotonic(), label))
    finally:
        producer.stop()
        proxy.lose(0)
    print(
        f"faults: {dict(faults)}, replies lost: {proxy.lost}; "
        f"accepted {len(producer.accepted)}, refused {producer.refused}"
    )

    accepted = {label for _, label in producer.accepted}
    ran = lambda: collections.Counter(ran_in_order(ledger))  # noqa: E731
    wait_until(
        lambda: accepted <= set(ran()),
        timeout=90,
        message=f"every accepted job to run (faults {dict(faults)}, seed {seed})",
    )

    client = private_redis.client()
    # Each job record ends completed, in that index only (a refused .delay() may have stored
    # its job too: it runs like any other).
    places = assert_all_completed(queue, client, "every stored job to be recorded completed")
    assert set(producer.ids.values()) <= set(places), "every accepted job has its record"

    # A job run twice was taken back from a lost (or late) worker or retried after a crash,
    # and its record says so; nothing ran twice without the queue knowing.
    twice = [label for label, times in ran().items() if times > 1 and label in producer.ids]
    for label in twice:
        job = queue.get_job(producer.ids[label])
        lines = [line for line in workers.logs().splitlines() if job.id in line or label in line]
        assert job.attempt > 1, (label, job.id, seed, lines)
    print(f"ran twice: {len(twice)} of {len(accepted)}")

    # Each step of a chain ran after the one before it completed, and passed its result on;
    # each group's callback received every member's result, in member order.
    first_runs = list(dict.fromkeys(ran_in_order(ledger)))
    for handle, labels in flows:
        assert handle.result(timeout=30) == labels, (labels, seed)
        if labels[0].startswith("chain"):
            found = [label for label in first_runs if label in labels]
            assert found == labels, ("the steps ran in order", found, seed)
    assert faults, "the run made no fault"
