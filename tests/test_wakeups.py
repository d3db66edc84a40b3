"""How idle worker processes wait for work (worker/wakeups.py): a child whose queues live on one
shard blocks on the wake-up list itself, next to its supervisor's pipe. The wait on its own, with
real Redis; then real ``runworker`` processes."""

import asyncio
import functools
import os
import signal
import threading
import time

import pytest
import redis

from django_jobs import JobQueue, JobStatus
from django_jobs.store import calls
from django_jobs.store.execute import arun, run
from django_jobs.worker import wakeups
from django_jobs.worker.leases import Leases
from django_jobs.worker.slots import GO, STOP
from django_jobs.worker.wakeups import ChildWakeups
from tests.processes import wait_until
from tests.test_idle_claims import blocked_waits
from tests.test_shards import SHARDS
from tests.testapp import jobs


def child_wait(block=1.0):
    wait = ChildWakeups.of(Leases(), ["default"], block)
    assert wait is not None
    return wait


def timed(call):
    started = time.monotonic()
    return call(), time.monotonic() - started


def test_a_job_enqueued_before_the_wait_began_wakes_it_at_once(queue, pipe, redis_client):
    # Between the claim that found nothing and the wait, a job came: its token waits in Redis.
    jobs.add.delay(1, 2)

    message, seconds = timed(lambda: child_wait().wait(pipe[0], None)[0])

    assert message == GO
    assert seconds < 0.5
    assert redis_client.llen(queue.keys.wakeup) == 0, "its token was taken: one child woke"


def test_a_job_enqueued_during_the_wait_ends_it(queue, pipe):
    threading.Timer(0.3, jobs.add.delay, (1, 2)).start()

    message, seconds = timed(lambda: child_wait().wait(pipe[0], None)[0])

    assert message == GO
    assert 0.25 < seconds < 0.9, "woken by the token, not by the end of a block"


def test_stop_from_the_supervisor_ends_the_wait_and_its_blpop(queue, pipe, redis_client):
    threading.Timer(0.2, pipe[1].send_bytes, (STOP,)).start()

    message, seconds = timed(lambda: child_wait().wait(pipe[0], None)[0])

    assert message == STOP
    assert seconds < 0.9, "before its one-second block ended"
    time.sleep(0.1)
    jobs.add.delay(1, 2)
    assert redis_client.llen(queue.keys.wakeup) == 1, "the dropped wait took no token"


def test_it_wakes_when_the_next_delayed_job_is_due(queue, pipe):
    due = time.time() + 0.4

    message, seconds = timed(lambda: child_wait().wait(pipe[0], due)[0])

    assert message == GO
    assert time.time() >= due
    assert seconds < 0.9


def test_without_tokens_it_claims_every_few_blocks_in_case_one_was_missed(queue, pipe):
    message, seconds = timed(lambda: child_wait(block=0.1).wait(pipe[0], None)[0])

    assert message == GO
    assert seconds >= wakeups.IDLE_CLAIM_EVERY * 0.1 * 0.9


def test_while_redis_does_not_answer_it_pauses_then_lets_the_claim_wait(
    jobs_settings, configure, pipe
):
    wait = child_wait()
    configure(REDIS_URL="redis://127.0.0.1:7379/0")  # nothing listens there

    message, seconds = timed(lambda: wait.wait(pipe[0], None)[0])
    assert message == GO
    assert 0.05 < seconds < 0.9

    threading.Timer(0.05, pipe[1].send_bytes, (STOP,)).start()
    wait.backoff.pause = 5.0  # a long pause, which STOP ends
    message, seconds = timed(lambda: wait.wait(pipe[0], None)[0])
    assert message == STOP
    assert seconds < 1.0


def test_a_kept_wait_connection_that_redis_closed_between_waits_is_made_afresh(
    tcp_redis, pipe, caplog
):
    # A child keeps the connection its waits go on (no checkout and return of the pool per
    # wake-up). Redis closed it (a restart, its idle timeout, CLIENT KILL) while the child ran
    # jobs: the next wait goes on a new connection at once, with no pause and no outage.
    wait = child_wait()
    jobs.add.delay(1, 2)
    assert wait.wait(pipe[0], None)[0] == GO
    tcp_redis.client_kill_filter(_type="normal", skipme=True)
    jobs.add.delay(3, 4)

    with caplog.at_level("WARNING"):
        message, seconds = timed(lambda: wait.wait(pipe[0], None)[0])

    assert message == GO
    assert seconds < 0.3
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    assert tcp_redis.llen(JobQueue().keys.wakeup) == 0, "its token was taken"


def test_queues_on_two_shards_are_waited_for_by_the_supervisor(jobs_settings):
    jobs_settings.DJANGO_JOBS = {**jobs_settings.DJANGO_JOBS, "SHARDS": SHARDS}
    assert ChildWakeups.of(Leases(), ["emails"], 1.0) is not None
    assert ChildWakeups.of(Leases(), ["emails", "reports"], 1.0) is None


def test_idle_children_wait_on_the_list_themselves_and_each_token_wakes_one(
    private_redis, workers, ledger
):
    workers.start("--concurrency", "2")
    # The two children block; the supervisor does not (it has no child waiting for its GO).
    with private_redis.client() as client:
        wait_until(lambda: len(blocked_waits(client)) == 2, message="two blocked children")
        time.sleep(0.3)
        assert len(blocked_waits(client)) == 2

    handles = [jobs.sleep.delay(0.6, label=f"s{i}") for i in range(2)]

    wait_until(lambda: all((ledger / f"s{i}.started").exists() for i in range(2)), timeout=5)
    started = [(ledger / f"s{i}.started").stat().st_mtime for i in range(2)]
    assert abs(started[0] - started[1]) < 0.4, "both ran side by side: a token woke each"
    assert [h.result(timeout=10) for h in handles] == [0.6, 0.6]


def test_an_idle_child_whose_wait_connection_redis_closed_while_it_ran_a_job_waits_quietly(
    tcp_redis, workers, ledger
):
    # The child keeps the connection its waits go on. Redis closes every connection (CLIENT
    # KILL, as an idle timeout or a proxy would) while the child runs a job: once the job is
    # done the child waits again on a fresh connection, with no outage, and the next job
    # starts at once.
    proc = workers.start("--concurrency", "1")
    assert jobs.add.delay(1, 1).result(timeout=15) == 2  # it has waited: its connection is kept
    wait_until(lambda: len(blocked_waits(tcp_redis)) == 1, message="the child blocked")
    handle = jobs.sleep.delay(1.0, label="busy")
    wait_until(lambda: (ledger / "busy.started").exists(), timeout=5)
    tcp_redis.client_kill_filter(_type="normal", skipme=True)
    assert handle.result(timeout=10) == 1.0
    wait_until(lambda: len(blocked_waits(tcp_redis)) == 1, message="the child blocked again")

    started = time.monotonic()
    assert jobs.add.delay(2, 2).result(timeout=10) == 4
    assert time.monotonic() - started < 1
    assert "does not answer" not in workers.output(proc)


def test_an_idle_child_of_a_frozen_supervisor_takes_no_job_until_it_answers(workers, ledger, queue):
    # Leases of 3 s: a child takes no job after 1.5 s without its supervisor.
    workers.settings = {**workers.settings, "LEASE_TIMEOUT": 3}
    proc = workers.start("--concurrency", "1")
    assert jobs.add.delay(1, 1).result(timeout=15) == 2  # up, and idle from now on

    os.kill(proc.pid, signal.SIGSTOP)
    try:
        time.sleep(2.0)
        handle = jobs.record.delay("late")  # its token wakes the child, which holds back
        time.sleep(1.5)
        assert handle.refresh().status is JobStatus.PENDING
        assert not (ledger / "record.log").exists()
    finally:
        os.kill(proc.pid, signal.SIGCONT)

    assert handle.result(timeout=10) == "late"
    assert (ledger / "record.log").read_text().split() == ["late"]
    assert "its supervisor has been silent" in workers.output(proc)


def test_a_result_is_read_once_its_notification_came_without_watching_again(
    private_redis, monkeypatch
):
    from django_jobs import JobQueue

    queue = JobQueue()
    handle = jobs.add.delay(2, 3)
    job = Leases(queue.prefix).dequeue(worker_id="w", lease=30)
    client = redis.Redis.from_url(private_redis.url)
    client.config_resetstat()
    threading.Timer(0.3, Leases(queue.prefix).complete_job, (job, 5)).start()
    writes = count_writes(monkeypatch)

    assert handle.result(timeout=5) == 5
    sent = list(writes)

    stats = client.info("commandstats")
    # The waiter's watch, its wait and one read of the job; and the completion.
    assert stats["cmdstat_blmove"]["calls"] == 1
    assert stats["cmdstat_fcall"]["calls"] == 3
    # The process's first wait on this connection: the watch alone, as the server might not
    # have the scripts yet (a refused watch in front would leave the wait to run its course).
    assert sent == [("FCALL",), ("BLMOVE", "FCALL")]
    client.close()


def count_writes(monkeypatch):
    """The commands of each write of this thread from now on (a list of tuples of command
    names, filled as they are sent), a connection's health check (``PING``) left out."""
    writes = []
    send = redis.connection.AbstractConnection.send_packed_command
    me = threading.get_ident()

    def counted(connection, command, check_health=True):
        packed = b"".join(bytes(c) for c in (command if isinstance(command, list) else [command]))
        lines = packed.split(b"\r\n")
        # A command's name follows its array header and the length of its first bulk string.
        names = tuple(lines[i + 2].decode() for i, n in enumerate(lines) if n[:1] == b"*")
        if threading.get_ident() == me and names != ("PING",):
            writes.append(names)
        return send(connection, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
    return writes


def test_a_finished_job_comes_back_in_one_write_and_keeps_one_token(private_redis, monkeypatch):
    from django_jobs import JobQueue

    queue = JobQueue()
    handle = jobs.add.delay(2, 3)
    Leases(queue.prefix).complete_job(Leases(queue.prefix).dequeue(worker_id="w", lease=30), 5)
    client = private_redis.client()
    writes = count_writes(monkeypatch)

    started = time.monotonic()
    assert handle.result(timeout=5) == 5
    assert handle.result(timeout=5) == 5  # and again: its done list holds one token still

    # Never watched while it ran: the watch gave the wait a token, so it did not block. The
    # first wait sent the watch alone (the server answered it: the next goes in the write).
    assert time.monotonic() - started < 1
    assert writes == [("FCALL",), ("BLMOVE", "FCALL"), ("FCALL", "BLMOVE", "FCALL")]
    done = queue.keys.done(handle.id)
    assert client.lrange(done, 0, -1) == ["1"]
    assert 590 < client.ttl(done) <= 600  # as long as a token pushed when it finished
    client.close()


@pytest.mark.parametrize("wait", ["sync", "async"])
def test_waiting_for_an_unknown_job_fails_at_once_and_leaves_no_lasting_key(private_redis, wait):
    from django_jobs import JobQueue
    from django_jobs.exceptions import JobNotFound

    queue = JobQueue()
    client = private_redis.client()
    wait_for = (
        functools.partial(queue.wait_for, "nope", timeout=30)
        if wait == "sync"
        else lambda: asyncio.run(queue.await_for("nope", timeout=30))
    )
    wait_for_a_finished_job(queue)  # the waits that follow send the watch in their write
    started = time.monotonic()
    with pytest.raises(JobNotFound, match="no job 'nope'"):
        wait_for()
    assert time.monotonic() - started < 1
    assert client.pttl(queue.keys.done("nope")) <= 1000  # gone, or going within a second
    assert client.exists(queue.keys.job("nope")) == 0
    client.close()


def test_a_job_that_comes_after_a_wait_for_its_unknown_id_is_waited_for(private_redis):
    """The token that ended the wait for an unknown id does not end a wait for the job that
    came with that id after all: the waiter blocks until the job is done, not in a loop."""
    from django_jobs import JobQueue
    from django_jobs.exceptions import JobNotFound

    queue = JobQueue()
    handle = jobs.add.delay(2, 3)
    client = private_redis.client()
    record = client.hgetall(queue.keys.job(handle.id))
    client.delete(queue.keys.job(handle.id))
    with pytest.raises(JobNotFound):
        handle.result(timeout=5)
    client.hset(queue.keys.job(handle.id), mapping=record)  # the job is there after all
    job = Leases(queue.prefix).dequeue(worker_id="w", lease=30)
    threading.Timer(0.5, Leases(queue.prefix).complete_job, (job, 5)).start()
    client.config_resetstat()

    assert handle.result(timeout=5) == 5

    assert client.info("commandstats")["cmdstat_blmove"]["calls"] == 1
    client.close()


@pytest.mark.parametrize("functions", [True, False], ids=["fcall", "evalsha"])
def test_a_wait_whose_scripts_the_server_lost_loads_them_and_reads_the_job(
    private_redis, configure, functions
):
    """The watch in front of ``result()``'s wait and the read behind it meet a server that
    restarted without the scripts: they are loaded and both sent again, with the sync and the
    asyncio client. A job watched while it ran has its token: the wait ends at once."""
    from django_jobs import JobQueue

    configure(REDIS_FUNCTIONS=functions)
    queue = JobQueue()
    handle = jobs.add.delay(2, 3)
    job = Leases(queue.prefix).dequeue(worker_id="w", lease=30)
    run(calls.watch(queue.keys, job_id=handle.id))  # its outcome goes to its done list
    Leases(queue.prefix).complete_job(job, 5)
    client = private_redis.client()

    for wait in (run, lambda plan: asyncio.run(arun(plan))):
        client.execute_command("FUNCTION", "FLUSH")
        client.execute_command("SCRIPT", "FLUSH")
        started = time.monotonic()
        status, done = wait(calls.wait_watched(queue.keys, job_id=handle.id, timeout=5))
        assert time.monotonic() - started < 1
        assert status == "completed"
        assert (done.id, done.status, done.result) == (handle.id, JobStatus.COMPLETED, 5)
    client.close()


def test_a_wait_for_an_unwatched_finished_job_without_scripts_runs_its_timeout_then_reads_it(
    private_redis,
):
    """The one case the watch in front cannot end the wait: the server lost the scripts (the
    watch is refused) and the job finished unwatched (no token). The wait runs its timeout,
    then the scripts are loaded and the job read: late, never wrong."""
    from django_jobs import JobQueue

    queue = JobQueue()
    handle = jobs.add.delay(2, 3)
    Leases(queue.prefix).complete_job(Leases(queue.prefix).dequeue(worker_id="w", lease=30), 5)
    client = private_redis.client()
    wait_for_a_finished_job(queue)  # the waits that follow send the watch in their write
    client.execute_command("FUNCTION", "FLUSH")

    started = time.monotonic()
    status, done = run(calls.wait_watched(queue.keys, job_id=handle.id, timeout=0.5))

    assert 0.5 <= time.monotonic() - started < 2
    assert status == "completed"
    assert (done.status, done.result) == (JobStatus.COMPLETED, 5)
    assert handle.result(timeout=5) == 5  # the next wait has its token
    client.close()


def wait_for_a_finished_job(queue):
    """Wait for a job finished already, with the sync and the asyncio client: the server has
    answered a watch sent in front of a wait on each."""
    handle = jobs.add.delay(1, 1)
    Leases(queue.prefix).complete_job(Leases(queue.prefix).dequeue(worker_id="w", lease=30), 2)
    assert handle.result(timeout=5) == 2
    assert asyncio.run(handle.aresult(timeout=5)) == 2


@pytest.mark.parametrize("functions", [True, False], ids=["fcall", "evalsha"])
def test_a_wait_after_redis_restarted_without_the_scripts_ends_at_once(
    private_redis, configure, functions
):
    """Redis restarted (SIGKILL; the AOF keeps the jobs, and with EVALSHA not the scripts):
    the thread's next wait is on a new connection, whose server has not answered a watch yet,
    so the watch goes on its own, loading the scripts, and the wait ends at once."""
    from django_jobs import JobQueue

    configure(REDIS_FUNCTIONS=functions)
    queue = JobQueue()
    wait_for_a_finished_job(queue)  # the waits that follow send the watch in their write
    handle = jobs.add.delay(2, 3)
    Leases(queue.prefix).complete_job(Leases(queue.prefix).dequeue(worker_id="w", lease=30), 5)

    private_redis.kill()
    private_redis.start()
    scripts = private_redis.client().script_exists(calls.SCRIPTS["watch"].sha)
    assert scripts == [False]

    started = time.monotonic()
    assert handle.result(timeout=30) == 5
    assert time.monotonic() - started < 1


def test_an_async_wait_after_redis_restarted_without_the_scripts_ends_at_once(
    private_redis, configure
):
    """As above with the asyncio client of one event loop, as an async server keeps it."""
    from django_jobs import JobQueue

    configure(REDIS_FUNCTIONS=False)
    queue = JobQueue()

    async def main():
        warm = await jobs.add.adelay(1, 1)
        Leases(queue.prefix).complete_job(Leases(queue.prefix).dequeue(worker_id="w", lease=30), 2)
        assert await warm.aresult(timeout=5) == 2  # this loop's client sends its watch in its write
        handle = await jobs.add.adelay(2, 3)
        Leases(queue.prefix).complete_job(Leases(queue.prefix).dequeue(worker_id="w", lease=30), 5)
        private_redis.kill()
        private_redis.start()
        started = time.monotonic()
        assert await handle.aresult(timeout=30) == 5
        return time.monotonic() - started

    assert asyncio.run(main()) < 1
