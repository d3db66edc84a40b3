"""Waiting for a job waits as long as asked, whatever the client's socket timeout; nothing
else waits for ever on a Redis that does not answer."""

import asyncio
import os
import signal
import threading
import time

import pytest

from django_jobs.exceptions import RedisUnavailable
from django_jobs.worker.leases import Leases
from tests.conftest import REDIS_URL
from tests.testapp import jobs


def with_option(url: str, option: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{option}"


@pytest.fixture
def short_socket_timeout(configure):
    """This test process talks to Redis with a URL that sets a 1 s socket timeout."""
    configure(REDIS_URL=with_option(REDIS_URL, "socket_timeout=1"))


def test_result_waits_longer_than_the_socket_timeout_of_the_url(workers, short_socket_timeout):
    workers.start("--concurrency", "1")
    handle = jobs.sleep.delay(3)

    started = time.monotonic()
    assert handle.result(timeout=10) == 3
    assert time.monotonic() - started < 8


def test_aresult_waits_longer_than_the_socket_timeout_of_the_url(workers, short_socket_timeout):
    workers.start("--concurrency", "1")
    handle = jobs.sleep.delay(3)

    assert asyncio.run(handle.aresult(timeout=10)) == 3


def test_wait_for_still_times_out_when_asked_to(queue, short_socket_timeout):
    job = queue.enqueue("nobody.runs.this")

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        queue.wait_for(job.id, timeout=2.5)
    assert 2.4 < time.monotonic() - started < 4


def test_idle_worker_with_a_short_socket_timeout_waits_quietly(workers, ledger, monkeypatch):
    # The worker's own URL: its wake-up wait blocks longer than its socket timeout.
    monkeypatch.setenv("REDIS_URL", with_option(REDIS_URL, "socket_timeout=1"))
    workers.start("--concurrency", "1")
    assert jobs.add.delay(1, 1).result(timeout=10) == 2
    time.sleep(4)  # idle, blocked on the wake-up list

    started = time.monotonic()
    assert jobs.add.delay(2, 2).result(timeout=10) == 4
    assert time.monotonic() - started < 1
    log = "".join(path.read_text() for path in ledger.glob("runworker-*.log"))
    assert "Timeout" not in log
    assert "unavailable" not in log.lower()


def test_delay_raises_instead_of_hanging_on_a_frozen_redis(private_redis, configure):
    configure(REDIS_CONNECT_TIMEOUT=1, REDIS_SOCKET_TIMEOUT=1)
    jobs.add.delay(1, 1)  # connected, scripts loaded
    outcome: list[BaseException | str] = []

    def delay() -> None:
        try:
            jobs.add.delay(2, 2)
            outcome.append("returned")
        except BaseException as exc:  # reported to the test thread
            outcome.append(exc)

    os.kill(private_redis.proc.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        caller = threading.Thread(target=delay, daemon=True)
        caller.start()
        caller.join(timeout=30)
        elapsed = time.monotonic() - started
    finally:
        os.kill(private_redis.proc.pid, signal.SIGCONT)

    assert outcome, "delay() still hangs after 30 s on a frozen Redis"
    assert isinstance(outcome[0], RedisUnavailable), outcome
    # 1 s per send, and .delay() sends a second time when the first got no reply.
    assert elapsed < 4


def test_a_result_wait_that_redis_froze_under_gives_up_and_the_next_one_works(
    private_redis, configure
):
    # A result's wait goes on the connection its thread keeps for every command: frozen
    # mid-wait (SIGSTOP), the wait gives up (its block plus the socket timeout) instead of
    # hanging, and leaves no half-read reply behind: once Redis is back, the same thread's
    # next wait and commands work at once.
    configure(REDIS_CONNECT_TIMEOUT=1, REDIS_SOCKET_TIMEOUT=1)
    handle = jobs.add.delay(1, 2)
    job = Leases().dequeue(worker_id="w", lease=30)
    pid = private_redis.proc.pid
    freeze = threading.Timer(0.5, os.kill, (pid, signal.SIGSTOP))  # the wait is under way
    thaw = threading.Timer(5.0, os.kill, (pid, signal.SIGCONT))
    freeze.start()
    thaw.start()
    try:
        started = time.monotonic()
        with pytest.raises((RedisUnavailable, TimeoutError)):
            handle.result(timeout=2)
        elapsed = time.monotonic() - started
    finally:
        freeze.join()
        thaw.join()
    assert 2 < elapsed < 4.5, "given up at the end of its block plus the socket timeout"

    threading.Timer(0.3, Leases().complete_job, (job, 3)).start()
    assert handle.result(timeout=5) == 3
    assert handle.queue.get_job(jobs.add.delay(2, 3).id).args == [2, 3]


def test_a_result_wait_after_redis_closed_the_threads_connection_works_at_once(tcp_redis, caplog):
    # On TCP a write to a connection the server closed does not fail: the thread's connection,
    # which the wait goes on too, is checked and made afresh first.
    handle = jobs.add.delay(1, 2)
    job = Leases().dequeue(worker_id="w", lease=30)
    tcp_redis.client_kill_filter(_type="normal", skipme=True)
    threading.Timer(0.3, Leases().complete_job, (job, 3)).start()

    with caplog.at_level("WARNING"):
        started = time.monotonic()
        assert handle.result(timeout=5) == 3
    assert time.monotonic() - started < 2
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]


def test_redis_timeouts_are_checked(configure):
    from django_jobs.checks import check_settings

    configure(REDIS_CONNECT_TIMEOUT=0, REDIS_SOCKET_TIMEOUT="10")
    messages = " ".join(str(m.msg) for m in check_settings())

    assert "unknown keys" not in messages
    assert "DJANGO_JOBS['REDIS_CONNECT_TIMEOUT']" in messages
    assert "DJANGO_JOBS['REDIS_SOCKET_TIMEOUT']" in messages
