"""The claim an idle child sends behind its wait on the wake-up list, in the same write
(worker/idle.py, store/waiting.py): the job comes with the token, by the server's clock; STOP
during the wait reads the claim and gives its jobs back; and the faults around it (the child
killed, the supervisor frozen, the worker stopped) lose no job. With real Redis; the last tests
with real ``runworker`` processes."""

import os
import signal
import threading
import time

import pytest

from django_jobs import JobQueue, JobStatus
from django_jobs.job import JobPriority
from django_jobs.store.scripts import SCRIPTS
from django_jobs.worker.idle import IdleClaims
from django_jobs.worker.leases import Claim, Leases
from django_jobs.worker.slots import GO, STOP
from django_jobs.worker.wakeups import ChildWakeups
from tests.census import assert_census
from tests.processes import wait_until
from tests.test_async_concurrency_faults import child_pids
from tests.testapp import jobs


class Child:
    """What IdleClaims needs of a worker child (ChildLoop): its pipe, leases and claim options,
    and room for ``room`` jobs (a ``max_jobs``); ``stops`` is what ``stopping()`` says."""

    def __init__(self, conn, room=100, batch=1):
        self.conn, self.room, self.batch = conn, room, batch
        self.leases = Leases()
        self.stops = False
        self.kept: list[Claim] = []

    def claim_options(self, batch=None):
        return self.leases.claim_options("w1", 30, batch=batch or self.batch)

    def reserve(self, wanted=1):
        kept = min(wanted, self.room)
        self.room -= kept
        return kept

    def taken(self, claim, wanted=1):
        self.kept.append(claim)

    def stopping(self):
        return self.stops


def idle(child, block=5.0):
    return IdleClaims(child, ChildWakeups.of(child.leases, ["default"], block), ["default"], 30)


def blocked_waits(client):
    return [c for c in client.client_list() if c["cmd"] == "blpop"]


def ready_ids(queue, client):
    return client.lrange(queue.keys.queue("default", JobPriority.NORMAL), 0, -1)


@pytest.mark.parametrize("functions", [True, False], ids=["fcall", "evalsha"])
def test_the_job_comes_with_the_token_its_claim_waiting_in_redis_behind_the_wait(
    private_redis, pipe, configure, functions
):
    configure(REDIS_FUNCTIONS=functions)
    client = private_redis.client()
    child = Child(pipe[0])
    jobs.add.delay(0, 0)  # the scripts are loaded: no noise
    assert child.leases.claim(["default"]).job is not None
    seen = {}

    def enqueue():
        (wait,) = blocked_waits(client)
        seen["qbuf"] = int(wait["qbuf"])  # the claim, read and held behind the BLPOP
        client.config_resetstat()
        seen["handle"] = jobs.add.delay(1, 2)

    timer = threading.Timer(0.3, enqueue)
    timer.start()
    started = time.time()
    claim = idle(child).wait(None)
    timer.join()  # the job may reach the child before delay() returns

    assert isinstance(claim, Claim)
    assert claim.job.id == seen["handle"].id
    assert seen["qbuf"] > 0, "the claim was sent with the wait"
    calls = client.info("commandstats")
    # The enqueue's FCALL, and the claim's: the child sent nothing after the token came.
    assert calls["cmdstat_fcall" if functions else "cmdstat_evalsha"]["calls"] == 2
    job = seen["handle"].refresh().job
    assert job.status is JobStatus.RUNNING
    # By the server's clock, when it ran (not when it was sent, 0.3 s before).
    assert started + 0.25 < job.started_at.timestamp() < time.time()
    deadline = client.zscore(JobQueue().keys.processing, job.id)
    assert deadline == pytest.approx(job.started_at.timestamp() + 30, abs=0.01)
    assert child.kept == [claim]


@pytest.mark.parametrize("functions", [True, False], ids=["fcall", "evalsha"])
def test_a_claim_that_finds_nothing_keeps_the_wait_going_until_a_job_comes(
    private_redis, pipe, configure, functions
):
    # A new server: the first claims behind a wait find no scripts, which are loaded.
    configure(REDIS_FUNCTIONS=functions)
    child = Child(pipe[0])
    threading.Timer(0.5, jobs.add.delay, (1, 2)).start()
    started = time.monotonic()

    claim = idle(child, block=0.1).wait(None)

    assert isinstance(claim, Claim)
    assert claim.job is not None
    assert 0.45 < time.monotonic() - started < 2.0


def unblocks(client):
    stats = client.info("commandstats")  # Redis 6.2 counts CLIENT's subcommands together
    return stats.get("cmdstat_client|unblock", stats.get("cmdstat_client", {})).get("calls", 0)


def test_stop_during_the_wait_ends_it_at_once_and_its_claim_takes_nothing(
    queue, pipe, redis_client
):
    threading.Timer(0.2, pipe[1].send_bytes, (STOP,)).start()
    started = time.monotonic()
    unblocked = unblocks(redis_client)

    assert idle(Child(pipe[0])).wait(None) == STOP

    assert time.monotonic() - started < 1.0, "not at the end of its five-second block"
    assert unblocks(redis_client) > unblocked, "ended by CLIENT UNBLOCK, its claim read"
    handle = jobs.add.delay(1, 2)
    assert redis_client.llen(queue.keys.wakeup) == 1, "the ended wait took no token"
    assert_census(queue, redis_client, {handle.id: "queue:default:normal"})


def given_back(caplog):
    return [r for r in caplog.records if "claimed as its process stopped" in r.getMessage()]


def test_the_jobs_a_claim_took_as_stop_came_go_back_to_the_head_in_order(
    queue, pipe, redis_client, caplog
):
    handles = [jobs.add.delay(i, i) for i in range(10)]  # a deep list: the claim takes 8
    child = Child(pipe[0], batch=8)
    pipe[1].send_bytes(STOP)
    caplog.set_level("INFO", "django_jobs.worker")

    assert idle(child).wait(None) == STOP

    assert len(given_back(caplog)) == 8, "its claim ran, and took a batch"
    assert ready_ids(queue, redis_client) == [h.id for h in handles]
    assert_census(queue, redis_client, {h.id: "queue:default:normal" for h in handles})
    assert child.kept == []


def test_the_jobs_a_claim_may_not_keep_go_back_and_the_others_run(
    queue, pipe, redis_client, caplog
):
    handles = [jobs.add.delay(i, i) for i in range(10)]
    child = Child(pipe[0], room=3, batch=8)  # its max_jobs leaves room for 3
    caplog.set_level("INFO", "django_jobs.worker")

    claim = idle(child).wait(None)

    assert [claim.job.id, *(j.id for j in claim.more)] == [h.id for h in handles[:3]]
    assert len(given_back(caplog)) == 5
    assert ready_ids(queue, redis_client) == [h.id for h in handles[3:]]
    expected = {h.id: "queue:default:normal" for h in handles[3:]}
    assert_census(queue, redis_client, {**{h.id: "processing" for h in handles[:3]}, **expected})


def test_a_stopping_child_sends_no_claim_and_a_token_says_go(queue, pipe, redis_client):
    child = Child(pipe[0])
    child.stops = True
    handle = jobs.add.delay(1, 2)

    assert idle(child).wait(None) == GO
    assert_census(queue, redis_client, {handle.id: "queue:default:normal"})


# -- real workers ---------------------------------------------------------------------------


def scripts_called(client, action):
    """The scripts ('claim', 'ack', ...) that Redis ran while ``action`` ran, in order, seen
    with MONITOR: as functions (FCALL) or, before Redis 7, as scripts (EVALSHA)."""
    names = {script.function: name for name, script in SCRIPTS.items()}
    names.update((script.sha, name) for name, script in SCRIPTS.items())
    called: list[str] = []
    ready, over = threading.Event(), threading.Event()

    def watch():
        with client.monitor() as monitor:
            ready.set()
            for command in monitor.listen():
                words = command["command"].split()
                if words[0] in ("FCALL", "EVALSHA"):
                    called.append(names.get(words[1], words[1]))
                if over.is_set() and words[0] == "PING":
                    return

    thread = threading.Thread(target=watch)
    thread.start()
    ready.wait(5)
    try:
        action()
    finally:
        over.set()
        client.ping()
        thread.join(5)
    return called


@pytest.mark.parametrize("functions", [True, False], ids=["fcall", "evalsha"])
def test_the_first_job_after_a_wait_is_recorded_in_a_call_of_its_own_before_the_next_claim(
    private_redis, workers, queue, configure, functions
):
    configure(REDIS_FUNCTIONS=functions)
    workers.settings["REDIS_FUNCTIONS"] = functions
    client = private_redis.client()
    for script in SCRIPTS.values():  # no NOSCRIPT reply, and no EVALSHA sent twice for it
        client.script_load(script.source)
    workers.start("--concurrency", "1")
    assert jobs.add.delay(1, 1).result(timeout=15) == 2
    wait_until(lambda: blocked_waits(client), message="the child to wait")

    def one_job():
        handle = jobs.add.delay(2, 3)
        assert handle.result(timeout=15) == 5
        wait_until(lambda: blocked_waits(client), message="the child to wait again")

    called = scripts_called(client, one_job)
    worker_calls = [name for name in called if name in ("claim", "ack", "ack_claim")]
    # The claim behind the wait takes the job; its record goes alone (its waiter is told in
    # that pass of Redis's loop, not after a claim), then the claim that finds nothing (the
    # one sent behind the next wait runs only when that wait ends).
    assert worker_calls == ["claim", "ack", "claim"], called

    def two_jobs():
        first = jobs.sleep.delay(0.3)
        wait_until(lambda: first.refresh().status is JobStatus.RUNNING, message="the first job")
        second = jobs.add.delay(1, 2)  # queued while the first runs
        assert second.result(timeout=15) == 3
        wait_until(lambda: blocked_waits(client), message="the child to wait again")

    called = scripts_called(client, two_jobs)
    worker_calls = [name for name in called if name in ("claim", "ack", "ack_claim")]
    # The first job after the wait is recorded on its own all the same (the worker cannot tell
    # that another came meanwhile); the next one's record goes with the next claim, as in a
    # drain: one more call per wait, not per job. The second job's wake-up token, which no
    # wait took, ends the next wait at once: its claim finds nothing.
    assert worker_calls == ["claim", "ack", "claim", "ack_claim", "claim"], called


def test_a_child_killed_after_its_claim_ran_loses_no_job(private_redis, workers, ledger, queue):
    client = private_redis.client()
    proc = workers.start("--concurrency", "1")
    assert jobs.add.delay(1, 1).result(timeout=15) == 2
    wait_until(lambda: blocked_waits(client), message="the child to wait")
    (child,) = child_pids(proc.pid)

    os.kill(child, signal.SIGSTOP)  # the claim runs, its reply is never read
    handle = jobs.record.delay("once")
    wait_until(lambda: handle.refresh().status is JobStatus.RUNNING, message="the claim")
    os.kill(child, signal.SIGKILL)

    # Its lease runs out (1 s) and recovery brings it back for the new child.
    assert handle.result(timeout=20) == "once", workers.logs()
    assert (ledger / "record.log").read_text().split() == ["once"]
    assert proc.poll() is None
    assert_census(queue, client, dict.fromkeys((handle.id, *completed(queue, client)), "completed"))


def completed(queue, client):
    return client.zrange(queue.keys.completed, 0, -1)


def test_a_worker_stopped_while_idle_stops_at_once_and_loses_no_job(
    private_redis, workers, ledger, queue
):
    client = private_redis.client()
    proc = workers.start("--concurrency", "2")  # each child blocks 2 s at a time
    assert jobs.add.delay(1, 1).result(timeout=15) == 2
    wait_until(lambda: len(blocked_waits(client)) == 2, message="both children to wait")

    handle = jobs.record.delay("raced")  # as the worker stops: taken, or given back
    started = time.monotonic()
    assert workers.stop(proc) == 0
    assert time.monotonic() - started < 1.5, "the children did not wait out their blocks"

    status = handle.refresh().status
    assert status in (JobStatus.COMPLETED, JobStatus.PENDING), workers.logs()
    done = set(completed(queue, client))
    assert_census(
        queue,
        client,
        {i: "completed" if i in done else "queue:default:normal" for i in done | {handle.id}},
    )
    if status is JobStatus.PENDING:
        assert ready_ids(queue, client) == [handle.id]
        workers.start("--concurrency", "1")
        assert handle.result(timeout=15) == "raced"
    assert (ledger / "record.log").read_text().split() == ["raced"]


def test_a_frozen_supervisor_s_child_gives_back_the_job_its_claim_took(
    workers, ledger, queue, redis_client
):
    workers.settings = {**workers.settings, "LEASE_TIMEOUT": 3}  # silent after 1.5 s
    proc = workers.start("--concurrency", "1")
    assert jobs.add.delay(1, 1).result(timeout=15) == 2

    os.kill(proc.pid, signal.SIGSTOP)
    try:
        time.sleep(2.0)
        handle = jobs.record.delay("late")  # the claim behind the wait takes it...
        wait_until(lambda: "claimed as its process stopped" in workers.output(proc))
        # ... and the child gives it back, unstarted, and waits for its supervisor.
        assert handle.refresh().status is JobStatus.PENDING
        assert ready_ids(queue, redis_client) == [handle.id]
    finally:
        os.kill(proc.pid, signal.SIGCONT)

    assert handle.result(timeout=10) == "late"
    assert (ledger / "record.log").read_text().split() == ["late"]
    done = completed(queue, redis_client)
    assert_census(queue, redis_client, dict.fromkeys(done, "completed"))
